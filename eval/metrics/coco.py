"""COCO instance-segmentation AP through pycocotools' COCOeval (iouType="segm").

The numbers are pycocotools' own: this module only turns predicted masks into the COCO
results format (RLE, one score per mask), runs COCOeval.evaluate / accumulate / summarize, and
names the 12 summary numbers; tests/test_parity_coco.py checks them against a direct
COCOeval run. Instance masks decoded from generated images need a confidence score each (the
instance codec derives one from color clustering).

By default only the images passed to `add` are evaluated (an image with no detection must
still be added, with zero masks): scoring a subset of val2017 then means that subset. Pass
`all_images=True` to `result` to score every ground-truth image (missing ones count as misses).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import pathlib

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from eval.metrics.summary import json_float

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def load_ground_truth(gt: str | os.PathLike | dict | COCO) -> COCO:
    """A pycocotools COCO object from an annotation file path, a loaded dict, or itself."""
    if isinstance(gt, COCO):
        return gt
    coco = COCO()
    if isinstance(gt, dict):
        coco.dataset = copy.deepcopy(gt)
    else:
        import json

        with open(gt) as f:
            coco.dataset = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in coco.dataset:
            raise ValueError(f"COCO ground truth {gt if not isinstance(gt, dict) else '(dict)'} has no {key!r}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def check_scores(detections: list, where: str) -> None:
    """ValueError naming `where` (the results file) and the entry unless every detection's
    "score" is a finite real number (not a string, a bool, None, NaN or inf): COCOeval ranks
    by score, and NaN or a string would rank arbitrarily or fail deep inside pycocotools."""
    bad = []
    for n, d in enumerate(detections):
        score = d.get("score") if isinstance(d, dict) else None
        ok = isinstance(score, (int, float, np.floating, np.integer)) and not isinstance(score, bool)
        if not (ok and np.isfinite(float(score))):
            bad.append((n, score))
    if bad:
        shown = ", ".join(f"entry {n}: {s!r}" for n, s in bad[:5])
        raise ValueError(f"{where}: {len(bad)} detections have no finite numeric score ({shown}"
                         f"{' ...' if len(bad) > 5 else ''})")


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLEs (JSON-able: counts as str) of bool (N, H, W) masks."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


class CocoSegmEvaluator:
    """Collects per-image instance masks with scores; `result()` runs COCOeval segm."""

    def __init__(self, gt: str | os.PathLike | dict | COCO):
        self.gt = load_ground_truth(gt)
        self._detections: list[dict] = []
        self._image_ids: list[int] = []
        self._cat_ids = set(self.gt.getCatIds())

    def add(self, image_id: int, masks: np.ndarray, scores, category_ids) -> None:
        """Adds the detections of one image.

        Args:
          image_id: the ground-truth image id.
          masks: bool (N, H, W) instance masks at the image's full resolution (N may be 0).
          scores: float (N,) confidences (ranking decides AP).
          category_ids: int (N,) COCO category ids.
        """
        image_id = int(image_id)
        if image_id not in self.gt.imgs:
            raise KeyError(f"image id {image_id} is not in the COCO ground truth")
        masks = np.asarray(masks, bool)
        scores = np.asarray(scores, np.float64).reshape(-1)
        category_ids = np.asarray(category_ids).reshape(-1)
        if not (masks.ndim == 3 and len(masks) == len(scores) == len(category_ids)):
            raise ValueError(f"image {image_id}: need (N, H, W) masks with N scores and N category ids, "
                             f"got {masks.shape}, {scores.shape}, {category_ids.shape}")
        info = self.gt.imgs[image_id]
        if len(masks) and masks.shape[1:] != (info["height"], info["width"]):
            raise ValueError(f"image {image_id}: masks are {masks.shape[1:]}, the image is "
                             f"{(info['height'], info['width'])}")
        if not np.isfinite(scores).all():
            raise ValueError(f"image {image_id}: scores must be finite, got {scores.tolist()}")
        unknown = set(category_ids.tolist()) - self._cat_ids
        if unknown:
            raise ValueError(f"image {image_id}: category ids {sorted(unknown)} are not in the ground truth")
        for rle, score, cat in zip(encode_masks(masks), scores, category_ids):
            self._detections.append({"image_id": image_id, "category_id": int(cat),
                                     "segmentation": rle, "score": float(score)})
        self._image_ids.append(image_id)

    def detections(self) -> list[dict]:
        """The detections in the COCO results format (JSON-able; save for the official server)."""
        return list(self._detections)

    def result(self, all_images: bool = False) -> dict:
        """JSON-able: the 12 COCOeval summary numbers (None where COCO gives -1) and per-class AP."""
        image_ids = sorted(self.gt.getImgIds() if all_images else set(self._image_ids))
        if not image_ids:
            raise ValueError("no image was added; nothing to evaluate")
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            if self._detections:
                dt = self.gt.loadRes(copy.deepcopy(self._detections))
            else:  # loadRes cannot take an empty list
                dt = COCO()
                dt.dataset = {"images": list(self.gt.dataset["images"]), "annotations": [],
                              "categories": copy.deepcopy(self.gt.dataset["categories"])}
                dt.createIndex()
            ev = COCOeval(self.gt, dt, iouType="segm")
            ev.params.imgIds = image_ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # precision: [IoU thresholds, recall points, categories, area ranges, max dets];
        # a class's AP averages the defined entries at area "all", 100 detections.
        precision = ev.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, cat_id in enumerate(ev.params.catIds):
            p = precision[:, :, k]
            p = p[p > -1]
            per_class[self.gt.cats[cat_id]["name"]] = json_float(p.mean()) if p.size else None
        return {
            "benchmark": "coco_instance_segmentation",
            "protocol": "pycocotools COCOeval iouType=segm",
            "num_images": len(image_ids),
            "num_detections": len(self._detections),
            **{name: (None if v == -1 else float(v)) for name, v in zip(STAT_NAMES, ev.stats)},
            "stats": [float(v) for v in ev.stats],
            "per_class_ap": per_class,
            "summary": log.getvalue().strip().splitlines()[-12:],
        }


# ----------------------------------------------------------------- COCO results files

RESULTS_NAME = "coco_results.json"


def load_detections(path: pathlib.Path, gt, what: str) -> list[dict]:
    """The checked detection list of a results file (or a folder holding RESULTS_NAME)."""
    file = path / RESULTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{what}: no COCO results file: expected {file}")
    try:
        dets = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: {file} is not valid JSON: {e}") from None
    if not isinstance(dets, list):
        raise ValueError(f"{what}: {file} must hold a JSON list of detections, got {type(dets).__name__}")
    cats = set(gt.getCatIds())
    for n, d in enumerate(dets):
        missing = [k for k in ("image_id", "category_id", "segmentation", "score") if k not in d]
        if missing:
            raise ValueError(f"{what}: {file} entry {n} lacks {missing} "
                             "(every detection needs a score and an RLE)")
        if d["image_id"] not in gt.imgs:
            raise ValueError(f"{what}: {file} entry {n}: image_id {d['image_id']} is not in the annotations")
        if d["category_id"] not in cats:
            raise ValueError(f"{what}: {file} entry {n}: category_id {d['category_id']} is not in the "
                             "annotations")
        seg = d["segmentation"]
        info = gt.imgs[d["image_id"]]
        if not isinstance(seg, dict) or list(seg.get("size", [])) != [info["height"], info["width"]]:
            raise ValueError(f"{what}: {file} entry {n}: segmentation must be an RLE of size "
                             f"[{info['height']}, {info['width']}] (image {d['image_id']})")
    check_scores(dets, f"{what}: {file}")  # NaN / inf / non-numeric scores
    return dets


class Detections:
    """A checked COCO results file, its detections grouped by scored image."""

    def __init__(self, path: pathlib.Path, gt, what: str, image_ids):
        self.path, self.dets = path, load_detections(path, gt, what)
        self.by_image: dict[int, list[dict]] = {}
        for det in self.dets:
            if det["image_id"] in image_ids:
                self.by_image.setdefault(det["image_id"], []).append(det)

    def unused(self) -> list[dict]:
        """Detections on images outside the scored ones (--limit)."""
        kept = {id(d) for found in self.by_image.values() for d in found}
        return [d for d in self.dets if id(d) not in kept]


def image_recall(gt, image_id: int, dets: list[dict]) -> tuple[float | None, int]:
    """(fraction of non-crowd ground-truth instances matched at IoU >= 0.5 by a detection of
    their category, number of such instances); None when the image has none."""
    anns = [a for a in gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    if not anns:
        return None, 0
    hit = 0
    for ann in anns:
        cands = [d["segmentation"] for d in dets if d["category_id"] == ann["category_id"]]
        if cands:
            rle = gt.annToRLE(ann)
            hit += bool((mask_utils.iou([_rle(c) for c in cands], [rle], [0]) >= 0.5).any())
    return hit / len(anns), len(anns)


def _rle(seg: dict) -> dict:
    return {"size": seg["size"], "counts": seg["counts"].encode("ascii") if isinstance(seg["counts"], str)
            else seg["counts"]}
