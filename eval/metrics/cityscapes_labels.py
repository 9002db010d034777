"""The Cityscapes label table, as cityscapesScripts defines it (helpers/labels.py, v2.3.0).

Copied rather than imported so that evaluation runs without cityscapesScripts installed;
`tests/test_metrics_cityscapes.py` checks every row against the installed package.

Ids: `label_id` is what ground-truth `*_gtFine_labelIds.png` files and official predictions
hold (0..33); `train_id` is the common 19-class training index (255 = not trained).
`ignore_in_eval` labels never count as ground truth (their pixels are excluded from FP), and
have no IoU of their own. Instance ids in `*_gtFine_instanceIds.png` are
`label_id * 1000 + k` for single instances and plain `label_id` elsewhere.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Label(NamedTuple):
    name: str
    label_id: int
    train_id: int
    category: str
    has_instances: bool
    ignore_in_eval: bool


# name, id, trainId, category, hasInstances, ignoreInEval (license plate has no id: it never
# appears in label images).
LABELS: tuple[Label, ...] = tuple(
    Label(*row)
    for row in [
        ("unlabeled", 0, 255, "void", False, True),
        ("ego vehicle", 1, 255, "void", False, True),
        ("rectification border", 2, 255, "void", False, True),
        ("out of roi", 3, 255, "void", False, True),
        ("static", 4, 255, "void", False, True),
        ("dynamic", 5, 255, "void", False, True),
        ("ground", 6, 255, "void", False, True),
        ("road", 7, 0, "flat", False, False),
        ("sidewalk", 8, 1, "flat", False, False),
        ("parking", 9, 255, "flat", False, True),
        ("rail track", 10, 255, "flat", False, True),
        ("building", 11, 2, "construction", False, False),
        ("wall", 12, 3, "construction", False, False),
        ("fence", 13, 4, "construction", False, False),
        ("guard rail", 14, 255, "construction", False, True),
        ("bridge", 15, 255, "construction", False, True),
        ("tunnel", 16, 255, "construction", False, True),
        ("pole", 17, 5, "object", False, False),
        ("polegroup", 18, 255, "object", False, True),
        ("traffic light", 19, 6, "object", False, False),
        ("traffic sign", 20, 7, "object", False, False),
        ("vegetation", 21, 8, "nature", False, False),
        ("terrain", 22, 9, "nature", False, False),
        ("sky", 23, 10, "sky", False, False),
        ("person", 24, 11, "human", True, False),
        ("rider", 25, 12, "human", True, False),
        ("car", 26, 13, "vehicle", True, False),
        ("truck", 27, 14, "vehicle", True, False),
        ("bus", 28, 15, "vehicle", True, False),
        ("caravan", 29, 255, "vehicle", True, True),
        ("trailer", 30, 255, "vehicle", True, True),
        ("train", 31, 16, "vehicle", True, False),
        ("motorcycle", 32, 17, "vehicle", True, False),
        ("bicycle", 33, 18, "vehicle", True, False),
        ("license plate", -1, -1, "vehicle", False, True),
    ]
)

# Average instance size in pixels per class over the training set (cityscapesScripts'
# `args.avgClassSize`): iIoU weights each instance's TP / FN by avg_size / instance_size.
AVG_INSTANCE_SIZE: dict[str, float] = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

NUM_LABEL_IDS = 34  # label ids 0..33; the confusion matrix is 34 x 34 as in the official script
ID_TO_LABEL: dict[int, Label] = {lab.label_id: lab for lab in LABELS if lab.label_id >= 0}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(lab.category for lab in LABELS))

# The 19 evaluated classes in label-id order (their IoUs make the mIoU).
EVAL_IDS: np.ndarray = np.array(
    [lab.label_id for lab in LABELS if lab.label_id >= 0 and not lab.ignore_in_eval], np.int64
)
EVAL_NAMES: tuple[str, ...] = tuple(ID_TO_LABEL[i].name for i in EVAL_IDS)

# Classes with an instance score (iIoU): evaluated classes that have instances (8).
INSTANCE_IDS: np.ndarray = np.array(
    [i for i in EVAL_IDS if ID_TO_LABEL[int(i)].has_instances], np.int64
)
INSTANCE_NAMES: tuple[str, ...] = tuple(ID_TO_LABEL[int(i)].name for i in INSTANCE_IDS)


def category_eval_ids(category: str) -> np.ndarray:
    """Label ids counted for a category's IoU: its labels that are not ignored in evaluation."""
    return np.array(
        [lab.label_id for lab in LABELS
         if lab.category == category and lab.label_id >= 0 and not lab.ignore_in_eval],
        np.int64,
    )


def _instance_categories() -> dict[str, np.ndarray]:
    # The official script gives a category an instance score only when all its labels (with an
    # id) have instances, and then counts ALL those labels, ignored ones included (caravan and
    # trailer count as "vehicle" predictions there, though not in the category IoU).
    out = {}
    for category in CATEGORIES:
        labs = [lab for lab in LABELS if lab.category == category and lab.label_id >= 0]
        if labs and all(lab.has_instances for lab in labs):
            out[category] = np.array([lab.label_id for lab in labs], np.int64)
    return out


INSTANCE_CATEGORY_IDS: dict[str, np.ndarray] = _instance_categories()  # human, vehicle

# uint8 lookup tables (index = pixel value 0..255).
# train id -> label id: the first label with that train id, as cityscapesScripts' inverse map
# (255 -> 0 "unlabeled"); values that are no train id also -> 0.
TRAIN_TO_LABEL_LUT: np.ndarray = np.zeros(256, np.uint8)
for _lab in reversed(LABELS):
    if 0 <= _lab.train_id < 256 and _lab.label_id >= 0:
        TRAIN_TO_LABEL_LUT[_lab.train_id] = _lab.label_id
# label id -> train id (non-trained and unknown values -> 255).
LABEL_TO_TRAIN_LUT: np.ndarray = np.full(256, 255, np.uint8)
for _lab in LABELS:
    if _lab.label_id >= 0:
        LABEL_TO_TRAIN_LUT[_lab.label_id] = _lab.train_id
# label id -> itself; anything that is no label id (34..255) -> 0 "unlabeled".
LABEL_TO_LABEL_LUT: np.ndarray = np.where(np.arange(256) < NUM_LABEL_IDS, np.arange(256), 0).astype(np.uint8)
