"""Evaluation views of the Cityscapes label table (ids, categories, lookup tables).

The table itself is kept once, in `data_mix.sources.cityscapes.LABELS` (the rows of
cityscapesScripts' helpers/labels.py v2.3.0, checked against the installed package by
tests/test_sources_cityscapes.py); this module derives what the metrics need from it, so
evaluation runs without cityscapesScripts installed and the two packages cannot drift apart.

Ids: `Label.id` is what ground-truth `*_gtFine_labelIds.png` files and official predictions
hold (0..33; -1 for "license plate", which never appears in label images); `train_id` is the
common 19-class training index (255 = not trained). `ignore_in_eval` labels never count as
ground truth (their pixels are excluded from FP), and have no IoU of their own. Instance ids in
`*_gtFine_instanceIds.png` are `label_id * 1000 + k` for single instances and plain
`label_id` elsewhere.
"""

from __future__ import annotations

import numpy as np

from tasks.cityscapes_classes import LABELS, Label

__all__ = [
    "AVG_INSTANCE_SIZE", "CATEGORIES", "COLORS_BY_LABEL_ID", "EVAL_IDS", "EVAL_NAMES",
    "ID_TO_LABEL", "INSTANCE_CATEGORY_IDS", "INSTANCE_IDS", "INSTANCE_NAMES", "LABELS",
    "LABEL_TO_LABEL_LUT", "LABEL_TO_TRAIN_LUT", "Label", "NUM_LABEL_IDS", "TRAIN_TO_LABEL_LUT",
    "category_eval_ids",
]

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
ID_TO_LABEL: dict[int, Label] = {lab.id: lab for lab in LABELS if lab.id >= 0}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(lab.category for lab in LABELS))

# The 19 evaluated classes in label-id order (their IoUs make the mIoU).
EVAL_IDS: np.ndarray = np.array(
    [lab.id for lab in LABELS if lab.id >= 0 and not lab.ignore_in_eval], np.int64
)
EVAL_NAMES: tuple[str, ...] = tuple(ID_TO_LABEL[i].name for i in EVAL_IDS)

# Classes with an instance score (iIoU): evaluated classes that have instances (8).
INSTANCE_IDS: np.ndarray = np.array(
    [i for i in EVAL_IDS if ID_TO_LABEL[int(i)].has_instances], np.int64
)
INSTANCE_NAMES: tuple[str, ...] = tuple(ID_TO_LABEL[int(i)].name for i in INSTANCE_IDS)

# uint8 (34, 3): the official color of each label id (the `color` column), for pictures.
COLORS_BY_LABEL_ID: np.ndarray = np.array([ID_TO_LABEL[i].color for i in range(NUM_LABEL_IDS)],
                                          np.uint8)


def category_eval_ids(category: str) -> np.ndarray:
    """Label ids counted for a category's IoU: its labels that are not ignored in evaluation."""
    return np.array(
        [lab.id for lab in LABELS
         if lab.category == category and lab.id >= 0 and not lab.ignore_in_eval],
        np.int64,
    )


def _instance_categories() -> dict[str, np.ndarray]:
    # The official script gives a category an instance score only when all its labels (with an
    # id) have instances, and then counts ALL those labels, ignored ones included (caravan and
    # trailer count as "vehicle" predictions there, though not in the category IoU).
    out = {}
    for category in CATEGORIES:
        labs = [lab for lab in LABELS if lab.category == category and lab.id >= 0]
        if labs and all(lab.has_instances for lab in labs):
            out[category] = np.array([lab.id for lab in labs], np.int64)
    return out


INSTANCE_CATEGORY_IDS: dict[str, np.ndarray] = _instance_categories()  # human, vehicle

# uint8 lookup tables (index = pixel value 0..255).
# train id -> label id: the first label with that train id, as cityscapesScripts' inverse map
# (255 -> 0 "unlabeled"); values that are no train id also -> 0.
TRAIN_TO_LABEL_LUT: np.ndarray = np.zeros(256, np.uint8)
for _lab in reversed(LABELS):
    if 0 <= _lab.train_id < 256 and _lab.id >= 0:
        TRAIN_TO_LABEL_LUT[_lab.train_id] = _lab.id
# label id -> train id (non-trained and unknown values -> 255).
LABEL_TO_TRAIN_LUT: np.ndarray = np.full(256, 255, np.uint8)
for _lab in LABELS:
    if _lab.id >= 0:
        LABEL_TO_TRAIN_LUT[_lab.id] = _lab.train_id
# label id -> itself; anything that is no label id (34..255) -> 0 "unlabeled".
LABEL_TO_LABEL_LUT: np.ndarray = np.where(np.arange(256) < NUM_LABEL_IDS, np.arange(256), 0).astype(np.uint8)
