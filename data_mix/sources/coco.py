"""COCO instance segmentation through pycocotools (the official API).

On-disk format: `annotations/instances_{split}2017.json` (COCO JSON: images, annotations,
categories) and the image folder `{split}2017/{file_name}`. Segmentations come as polygons,
uncompressed RLE (crowd regions) or compressed RLE; `COCO.annToMask` decodes all three.

Crowd regions (`iscrowd=1`) are kept by default, flagged in `meta["iscrowd"]` (one flag per
mask, aligned with `instance_masks`): COCO evaluation treats them as "ignore" regions, never as
instances to find. `include_crowd=False` drops them.

The parsed annotation index is not pickled: a grain worker re-reads the JSON once (lazily);
the image id list, fixed at construction, keeps record order identical in every process.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import warnings

import numpy as np

from data_mix.sources.base import RecordError, Source
from data_mix.sources.images import decode_rgb


def load_coco(annotation_file: str | os.PathLike):
    """pycocotools.coco.COCO of `annotation_file`, without its stdout chatter."""
    from pycocotools.coco import COCO

    path = pathlib.Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} does not exist")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return COCO(str(path))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a COCO annotation file: {type(e).__name__}: {e}") from None


def ann_mask(coco, ann: dict, height: int, width: int, *, what: str) -> np.ndarray:
    """bool (H, W) mask of one annotation (polygon / RLE / compressed RLE)."""
    if "segmentation" not in ann:
        raise RecordError(f"{what}: annotation {ann.get('id')} has no 'segmentation'")
    try:
        with warnings.catch_warnings():
            # pycocotools' decode trips numpy 2's __array__(copy=) deprecation; harmless.
            warnings.simplefilter("ignore", DeprecationWarning)
            m = coco.annToMask(ann)
    except Exception as e:  # noqa: BLE001 - pycocotools raises bare Exception on bad input
        raise RecordError(f"{what}: annotation {ann.get('id')} has a malformed segmentation: "
                          f"{type(e).__name__}: {e}") from None
    if m.shape != (height, width):
        raise RecordError(f"{what}: annotation {ann.get('id')} mask {m.shape} does not match "
                          f"image size {(height, width)}")
    return m.astype(bool)


class _CocoBacked(Source):
    """Holds a lazily (re)loaded COCO index; subclasses set `self.annotation_file`."""

    annotation_file: pathlib.Path
    _coco = None

    @property
    def coco(self):
        if self._coco is None:
            self._coco = load_coco(self.annotation_file)
        return self._coco

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_coco", None)
        return state

    def _read_image(self, image_id: int) -> tuple[np.ndarray, dict, str]:
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RecordError(f"missing file {path}") from None
        image = decode_rgb(data, str(path))
        if image.shape[:2] != (info["height"], info["width"]):
            raise RecordError(f"{path}: image {image.shape[:2]} but {self.annotation_file} says "
                              f"{(info['height'], info['width'])}")
        return image, info, str(path)


class COCOInstancesSource(_CocoBacked):
    """COCO images with instance masks.

    Args:
      annotation_file: e.g. annotations/instances_val2017.json.
      image_dir: e.g. val2017/.
      include_crowd: keep iscrowd regions (flagged in meta["iscrowd"]).
      skip_empty: drop images without annotations (COCO evaluation keeps them).
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); instance_masks bool (N, H, W); instance_classes (N names);
    meta {dataset, id (image id), file_name, image_path, annotation_file, ann_ids,
    category_ids, iscrowd, bboxes (x, y, w, h), areas}.
    """

    def __init__(self, annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *,
                 include_crowd: bool = True, skip_empty: bool = False, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.annotation_file = pathlib.Path(annotation_file)
        self.image_dir = pathlib.Path(image_dir)
        self.include_crowd = include_crowd
        coco = self.coco
        ids = sorted(coco.imgs)
        if skip_empty:
            ids = [i for i in ids if coco.imgToAnns.get(i)]
        self.image_ids = ids
        self.categories = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        self.name = f"coco/{self.annotation_file.stem}"

    def __len__(self) -> int:
        return len(self.image_ids)

    def _load(self, i: int) -> dict:
        image_id = self.image_ids[i]
        image, info, path = self._read_image(image_id)
        h, w = image.shape[:2]
        anns = sorted(self.coco.imgToAnns.get(image_id, []), key=lambda a: a["id"])
        if not self.include_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        what = f"{self.annotation_file} (image {image_id})"
        unknown = sorted({a["category_id"] for a in anns} - set(self.categories))
        if unknown:
            raise RecordError(f"{what}: category ids {unknown} are not in the file's categories")
        masks = np.zeros((len(anns), h, w), bool)
        for k, ann in enumerate(anns):          # one C call per instance, not per pixel
            masks[k] = ann_mask(self.coco, ann, h, w, what=what)
        meta = {"dataset": "coco", "id": int(image_id), "file_name": info["file_name"],
                "image_path": path, "annotation_file": str(self.annotation_file),
                "ann_ids": [int(a["id"]) for a in anns],
                "category_ids": [int(a["category_id"]) for a in anns],
                "iscrowd": [bool(a.get("iscrowd", 0)) for a in anns],
                "bboxes": [[float(v) for v in a.get("bbox", [])] for a in anns],
                "areas": [float(a.get("area", 0.0)) for a in anns]}
        return {"image": image, "instance_masks": masks,
                "instance_classes": [self.categories[a["category_id"]] for a in anns], "meta": meta}
