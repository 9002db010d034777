"""Referring / reasoning segmentation: cIoU, gIoU and precision@IoU over expressions.

One sample = one referring expression with its predicted and ground-truth binary masks.

- cIoU (cumulative IoU, RefCOCO "overall IoU") = sum of intersections / sum of unions over the
  dataset (large objects weigh more).
- gIoU (generalized IoU, LISA / ReasonSeg) = mean over expressions of the per-expression IoU.
  An expression whose ground truth and prediction are both empty has IoU `empty_iou`: 1.0 as
  LISA scores "no-object" targets (LAVT-style RefCOCO code uses 0.0; RefCOCO has no empty
  targets, so it only matters for datasets that have them).
- precision@t = % of expressions with IoU >= t, t in 0.5..0.9 (LAVT / CRIS convention).
"""

from __future__ import annotations

import numpy as np

from eval.metrics.summary import json_float

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Pixel counts |pred & gt| and |pred | gt| of two bool (H, W) masks."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, ground truth {gt.shape}")
    inter = int(np.count_nonzero(pred & gt))
    return inter, int(np.count_nonzero(pred)) + int(np.count_nonzero(gt)) - inter


class ReferringEvaluator:
    """Accumulates per-expression intersections and unions; `result()` gives cIoU / gIoU / prec@t."""

    def __init__(self, thresholds=THRESHOLDS, empty_iou: float = 1.0):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.empty_iou = float(empty_iou)
        self.names: list[str] = []
        self.inter: list[int] = []
        self.union: list[int] = []

    def add(self, pred: np.ndarray, gt: np.ndarray, name: str = "") -> float:
        """Adds one expression: bool (H, W) predicted and ground-truth masks. Returns its IoU."""
        inter, union = intersection_union(pred, gt)
        self.names.append(name)
        self.inter.append(inter)
        self.union.append(union)
        return inter / union if union else self.empty_iou

    def merge(self, other: "ReferringEvaluator") -> None:
        """Adds another evaluator's expressions."""
        self.names += other.names
        self.inter += other.inter
        self.union += other.union

    def ious(self) -> np.ndarray:
        """float64 (N,): per-expression IoU in the order added."""
        inter = np.asarray(self.inter, np.float64)
        union = np.asarray(self.union, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, self.empty_iou)

    def result(self, per_expression: bool = False) -> dict:
        """JSON-able: ciou, giou (fractions in 0..1), precision@t (percent), counts."""
        ious = self.ious()
        total_union = sum(self.union)
        out = {
            "benchmark": "referring",
            "num_expressions": len(ious),
            "ciou": json_float(sum(self.inter) / total_union) if total_union else None,
            "giou": json_float(ious.mean()) if len(ious) else None,
            "precision": {f"{t:g}": json_float(100.0 * np.mean(ious >= t)) if len(ious) else None
                          for t in self.thresholds},
            "empty_iou": self.empty_iou,
        }
        if per_expression:
            out["per_expression"] = [{"name": n, "iou": float(v), "intersection": i, "union": u}
                                     for n, v, i, u in zip(self.names, ious, self.inter, self.union)]
        return out
