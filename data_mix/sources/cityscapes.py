"""Cityscapes fine annotations: images, 19-class semantic labels, instance masks.

On-disk formats read (https://www.cityscapes-dataset.com, cityscapesScripts):

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png     8-bit RGB, 2048x1024
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png      uint8 label ids 0..33
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_instanceIds.png   uint16 (or int32) ids

either as extracted trees under `root`, or inside the official archives
`root/leftImg8bit_trainvaltest.zip` and `root/gtFine_trainvaltest.zip` (read in place).

labelIds -> `semantic`: the official trainId column (19 evaluated classes, 0..18); every id
with trainId 255 (void, ignored in evaluation) becomes -1. instanceIds: a pixel of an instance
of class c holds c*1000 + k; pixels below 1000 hold a plain label id (stuff, or a "group"
region such as a crowd of cars). `instance_masks` holds one mask per instance of the 8
evaluated instance classes (person, rider, car, truck, bus, train, motorcycle, bicycle); group
regions are not instances (their classes are listed in `meta["crowd_classes"]`).

Evaluation (cityscapesScripts) compares labelId PNGs: `meta["label_ids_path"]` and
`meta["instance_ids_path"]` point at the ground truth ("archive.zip::member" inside a zip).
The label table is `tasks.cityscapes_classes.LABELS` (verified against
cityscapesscripts.helpers.labels), re-exported here.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.base import (
    RecordError,
    Source,
    check_label_range,
    masks_from_ids,
    present_values,
)
from data_mix.sources.images import decode_gray, decode_rgb
from data_mix.sources.storage import DirStore, ZipStore
from tasks.cityscapes_classes import LABELS, Label  # noqa: F401  (re-exported)

ID_TO_LABEL = {lab.id: lab for lab in LABELS}
#: The 19 evaluated classes in trainId order (index = trainId = value in `semantic`).
CLASSES: tuple[str, ...] = tuple(lab.name for lab in sorted(
    (lab for lab in LABELS if 0 <= lab.train_id < 255), key=lambda lab: lab.train_id))
#: Names of the 8 classes with evaluated instances.
INSTANCE_CLASSES: tuple[str, ...] = tuple(
    lab.name for lab in LABELS if lab.has_instances and not lab.ignore_in_eval)
#: labelId of each trainId 0..18 (uint8 (19,)): the inverse map evaluation needs to write
#: predictions as the labelId PNGs cityscapesScripts reads.
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array(
    [next(lab.id for lab in LABELS if lab.train_id == t) for t in range(len(CLASSES))], np.uint8)

_VALID_IDS = np.array(sorted(lab.id for lab in LABELS if lab.id >= 0), np.int64)
# labelId -> semantic index (trainId, with 255 -> -1); 256 entries so any uint8 indexes it.
_ID_TO_SEMANTIC = np.full(256, -1, np.int32)
for _lab in LABELS:
    if 0 <= _lab.id and 0 <= _lab.train_id < 255:
        _ID_TO_SEMANTIC[_lab.id] = _lab.train_id
_INSTANCE_LABEL_IDS = np.array([lab.id for lab in LABELS if lab.name in INSTANCE_CLASSES], np.int64)
_GROUP_LABEL_IDS = np.array([lab.id for lab in LABELS if lab.has_instances], np.int64)

SPLITS = ("train", "val", "test")
ARCHIVES = {"leftImg8bit": "leftImg8bit_trainvaltest.zip", "gtFine": "gtFine_trainvaltest.zip"}


def label_ids_to_semantic(label_ids: np.ndarray, *, what: str = "labelIds") -> np.ndarray:
    """int32 (H, W) trainIds (0..18, -1 ignore) from uint8 labelIds; raises on unknown ids."""
    check_label_range(label_ids, _VALID_IDS, what=what)
    return _ID_TO_SEMANTIC[label_ids]


def semantic_to_label_ids(semantic: np.ndarray, *, ignore_id: int = 0) -> np.ndarray:
    """uint8 labelIds from trainIds (what cityscapesScripts expects); -1 -> `ignore_id`."""
    s = np.asarray(semantic)
    out = np.full(s.shape, ignore_id, np.uint8)
    ok = (s >= 0) & (s < len(CLASSES))
    out[ok] = TRAIN_ID_TO_LABEL_ID[s[ok]]
    return out


def instances_from_ids(instance_ids: np.ndarray, *, what: str = "instanceIds"
                       ) -> tuple[np.ndarray, list[str], list[str]]:
    """(masks bool (N, H, W), class names (N), crowd class names) from an instanceIds map.

    Instances are the values >= 1000 whose class (value // 1000) is one of INSTANCE_CLASSES,
    in increasing id order. Values < 1000 of an instance-bearing class are group regions.
    """
    ids = np.asarray(instance_ids)
    values = present_values(ids).astype(np.int64)
    classes = np.where(values >= 1000, values // 1000, values)
    check_label_range(classes, _VALID_IDS, what=what)
    inst = values[(values >= 1000) & np.isin(values // 1000, _INSTANCE_LABEL_IDS)]
    crowd = values[(values < 1000) & np.isin(values, _GROUP_LABEL_IDS)]
    names = [ID_TO_LABEL[int(v) // 1000].name for v in inst]
    crowd_names = [ID_TO_LABEL[int(v)].name for v in crowd]
    return masks_from_ids(ids, inst), names, crowd_names


def _open_tree(root: pathlib.Path, tree: str):
    if (root / tree).is_dir():
        return DirStore(root)
    if (root / ARCHIVES[tree]).is_file():
        return ZipStore(root / ARCHIVES[tree])
    raise FileNotFoundError(f"Cityscapes: neither folder {root / tree} nor archive "
                            f"{root / ARCHIVES[tree]} exists")


class CityscapesSource(Source):
    """Cityscapes fine split as records.

    Args:
      root: folder holding `leftImg8bit/` and `gtFine/` (extracted) or the official zips.
      split: "train", "val" or "test" (test labels are placeholders; use with_labels=False).
      with_labels: read gtFine (semantic + instances); False yields images only.
      with_instances: also decode instanceIds into `instance_masks`.
      skip_bad: see `Source`.

    Record: image uint8 (1024, 2048, 3); semantic int32 (trainIds, -1 ignore); classes (19);
    instance_masks bool (N, H, W); instance_classes; meta {dataset, id, split, city,
    image_path, label_ids_path, instance_ids_path, crowd_classes}.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", *, with_labels: bool = True,
                 with_instances: bool = True, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        if split not in SPLITS:
            raise ValueError(f"Cityscapes split {split!r}; expected one of {SPLITS}")
        self.root = pathlib.Path(root)
        self.split = split
        self.with_labels = with_labels
        self.with_instances = with_instances
        self.name = f"cityscapes/{split}"
        self.images = _open_tree(self.root, "leftImg8bit")
        self.labels = _open_tree(self.root, "gtFine") if with_labels else None
        suffix = "_leftImg8bit.png"
        self.stems = [p[: -len(suffix)] for p in self.images.list(f"leftImg8bit/{split}", suffix)]
        if not self.stems:
            raise FileNotFoundError(f"Cityscapes: no *{suffix} under leftImg8bit/{split} in "
                                    f"{self.images!r}")

    def __len__(self) -> int:
        return len(self.stems)

    def _paths(self, i: int) -> tuple[str, str, str]:
        stem = self.stems[i]                                  # leftImg8bit/val/city/city_x_y
        gt = "gtFine" + stem[len("leftImg8bit"):]
        return stem + "_leftImg8bit.png", gt + "_gtFine_labelIds.png", gt + "_gtFine_instanceIds.png"

    def _load(self, i: int) -> dict:
        image_rel, label_rel, inst_rel = self._paths(i)
        image = decode_rgb(self.images.read(image_rel), self.images.describe(image_rel))
        city = image_rel.split("/")[2]
        meta = {"dataset": "cityscapes", "id": pathlib.PurePosixPath(self.stems[i]).name,
                "split": self.split, "city": city, "image_path": self.images.describe(image_rel)}
        record = {"image": image, "meta": meta}
        if not self.with_labels:
            return record
        what = self.labels.describe(label_rel)
        label_ids = decode_gray(self.labels.read(label_rel), what, dtypes=(np.uint8,))
        if label_ids.shape != image.shape[:2]:
            raise RecordError(f"{what}: label map {label_ids.shape} does not match image "
                              f"{image.shape[:2]} ({meta['image_path']})")
        record["semantic"] = label_ids_to_semantic(label_ids, what=what)
        record["classes"] = list(CLASSES)
        meta["label_ids_path"] = what
        meta["instance_ids_path"] = self.labels.describe(inst_rel)
        if self.with_instances:
            iwhat = self.labels.describe(inst_rel)
            inst = decode_gray(self.labels.read(inst_rel), iwhat, dtypes=(np.uint16, np.uint8))
            masks, names, crowd = instances_from_ids(inst, what=iwhat)
            record["instance_masks"] = masks
            record["instance_classes"] = names
            meta["crowd_classes"] = crowd
        return record
