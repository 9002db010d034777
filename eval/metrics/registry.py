"""`for_task(task, **spec)`: the evaluator of a task, the one scoring path of every caller.

The trainer's `decoded` evaluator, the demo and every benchmark build their evaluators here,
so a number under one name (`eval.metrics.table`) has one definition. Every evaluator has

    ev.add(pred, gt, ..., name="")    one image / expression / case; returns its record (or None)
    ev.merge(other)                   absorbs another evaluator of the same spec (workers, hosts)
    ev.result()                       JSON-able dict; `table.summary(task, ev.result())` reads it

Tasks and specs:
    depth        DepthEvaluator(preset="synthetic_scenes", alignment="none")
    normals      NormalsEvaluator()
    semantic     SemanticEvaluator(num_classes=None: inferred); protocol="cityscapes":
                 CityscapesEvaluator(pred_ids="label", instance_scores=True)
    instance     InstanceEvaluator(): add(Instances, gt masks (K, H, W)) per query, COCOeval
                 at the end; ground_truth=<COCO>: CocoSegmEvaluator on real annotations
    referring    ReferringEvaluator(); a (K, H, W) stack of targets adds K samples
    binary       BinaryMasks(empty_hd95="diagonal"): Dice and HD95
    restoration  RestorationEvaluator(crop=0): PSNR / SSIM on uint8 RGB
    generation   GeneratedImages(crop=0): the same, SSIM undefined below 11x11 pixels
"""

from __future__ import annotations

import math

import numpy as np

from eval.metrics.binary import BinaryMaskEvaluator
from eval.metrics.cityscapes import CityscapesEvaluator
from eval.metrics.coco import CocoSegmEvaluator, encode_masks
from eval.metrics.confusion import ConfusionMatrix
from eval.metrics.depth import DepthEvaluator
from eval.metrics.depth_presets import SYNTHETIC_SCENES
from eval.metrics.normals import NormalsEvaluator
from eval.metrics.referring import ReferringEvaluator
from eval.metrics.restoration import RestorationEvaluator, psnr


class SemanticEvaluator(ConfusionMatrix):
    """A `ConfusionMatrix` whose class count may be left to the data: K = 1 + the largest class
    index seen in ground truth or prediction (labels < 0, and `ignore_index` or above in a
    prediction, are unlabelled: misses)."""

    def __init__(self, num_classes: int | None = None, ignore_index: int = 255):
        super().__init__(num_classes or 1, ignore_index)
        self.fixed = num_classes is not None

    def add(self, pred: np.ndarray, gt: np.ndarray, name: str = "") -> None:
        del name
        if not self.fixed:
            pred = np.asarray(pred)
            top = max(int(np.max(gt, initial=-1)), int(np.max(pred[pred < self.ignore_index], initial=-1)))
            self.num_classes = max(self.num_classes, min(top + 1, 255))
        super().add(pred, gt)

    def merge(self, other: ConfusionMatrix) -> None:
        super().merge(other)
        if not self.fixed:
            self.num_classes = max(self.num_classes, other.num_classes)


class BinaryMasks(BinaryMaskEvaluator):
    """`BinaryMaskEvaluator` with the common argument order add(pred, gt, name); unnamed
    cases are numbered."""

    def add(self, pred, gt, name: str = "", *legacy):
        if legacy:  # BinaryMaskEvaluator's own order: add(name, pred, gt)
            name, pred, gt = pred, gt, legacy[0]
        return super().add(name or str(len(self.cases)), pred, gt)


class InstanceEvaluator:
    """COCO mask AP of instance queries without a COCO annotation file: each `add` is one image
    (query) whose ground truth is the bool (K, H, W) masks of its class (`category`)."""

    def __init__(self):
        self.queries: list[tuple[object, np.ndarray, str]] = []

    def add(self, pred, gt: np.ndarray, name: str = "", category: str = "object") -> None:
        """pred: `tasks.instance.Instances` (masks (N, H, W), scores (N,)); gt: bool (K, H, W)."""
        del name
        self.queries.append((pred, np.asarray(gt, bool), str(category)))

    def merge(self, other: "InstanceEvaluator") -> None:
        self.queries += other.queries

    def ground_truth(self) -> dict:
        """COCO-format ground truth: query i is image i + 1 holding its class's instances."""
        ids = {c: k + 1 for k, c in enumerate(sorted({c for _, _, c in self.queries}))}
        images, annotations = [], []
        for i, (_, masks, cat) in enumerate(self.queries):
            h, w = masks.shape[1:]
            images.append({"id": i + 1, "height": h, "width": w, "file_name": f"query_{i}.png"})
            for mask, rle in zip(masks, encode_masks(masks), strict=True):
                ys, xs = np.nonzero(mask)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": ids[cat],
                    "segmentation": rle, "area": float(mask.sum()), "iscrowd": 0,
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                             float(ys.max() - ys.min() + 1)]})
        return {"images": images, "annotations": annotations,
                "categories": [{"id": k, "name": c} for c, k in ids.items()]}

    def result(self) -> dict:
        gt = self.ground_truth()
        ids = {c["name"]: c["id"] for c in gt["categories"]}
        ev = CocoSegmEvaluator(gt)
        for i, (pred, _, cat) in enumerate(self.queries):
            ev.add(i + 1, pred.masks, pred.scores, [ids[cat]] * len(pred.masks))
        return ev.result()


class Referring(ReferringEvaluator):
    """`ReferringEvaluator` taking one (H, W) mask or a (K, H, W) stack of targets per add."""

    def add(self, pred, gt, name: str = ""):
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        if gt.ndim == 3:
            return [super(Referring, self).add(p, g, name=f"{name}/{k}") for k, (p, g) in
                    enumerate(zip(pred, gt, strict=True))]
        return super().add(pred, gt, name=name)


class GeneratedImages(RestorationEvaluator):
    """`RestorationEvaluator` for generated images of any size: SSIM is undefined (NaN, left
    out of nothing: its mean is then None) below its 11x11 window, PSNR always defined."""

    def add(self, pred, gt, name: str = "") -> dict:
        if min(np.shape(gt)[:2]) - 2 * self.crop >= 11:
            return super().add(pred, gt, name=name)
        record = {"name": name, "psnr": psnr(pred, gt, self.crop), "ssim": math.nan}
        self.records.append(record)
        return record


def for_task(task: str, **spec):
    """The evaluator of `task` with its spec (see the module docstring)."""
    if task == "depth":
        preset = spec.pop("preset", SYNTHETIC_SCENES)
        return DepthEvaluator(SYNTHETIC_SCENES if preset == SYNTHETIC_SCENES.name else preset, **spec)
    if task == "normals":
        return NormalsEvaluator(**spec)
    if task == "semantic":
        if spec.pop("protocol", None) == "cityscapes":
            return CityscapesEvaluator(**spec)
        return SemanticEvaluator(**spec)
    if task == "instance":
        return CocoSegmEvaluator(spec["ground_truth"]) if "ground_truth" in spec else InstanceEvaluator()
    if task == "referring":
        return Referring(**spec)
    if task == "binary":
        return BinaryMasks(**spec)
    if task == "restoration":
        return RestorationEvaluator(**spec)
    if task == "generation":
        return GeneratedImages(**spec)
    raise KeyError(f"no evaluator for task {task!r}; expected depth, normals, semantic, instance, "
                   "referring, binary, restoration or generation")
