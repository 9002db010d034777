"""The metric table: the one name of every metric, for reports, the demo, TensorBoard and JSON.

Each `Metric` says where its value sits in its evaluator's `result()` (`path`), its label and
unit, whether higher is better, and the protocol sentence reports print. The trainer logs
`decoded/<task>/<key>`, the demo's results.json and report use `key` and `label`, benchmark
report columns take `label` and `digits` (`eval.report.Column.of`). `headline(task)` lists the
metrics that decide "beats the baseline" for a task, `extra(task)` those reported beside them;
`summary(task, result)` reads them out of an evaluator result as {key: value}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Metric:
    """key: the name everywhere; path: keys into the evaluator result; unit: "" for fractions."""

    key: str
    task: str
    path: tuple[str, ...]
    label: str
    unit: str
    higher_is_better: bool
    protocol: str
    digits: int = 3

    @property
    def direction(self) -> str:
        """"higher" or "lower" (is better)."""
        return "higher" if self.higher_is_better else "lower"

    def describe(self) -> str:
        """Label with unit and direction, e.g. "AbsRel (lower is better)"."""
        unit = f", {self.unit}" if self.unit else ""
        return f"{self.label}{unit} ({self.direction} is better)"

    def value(self, result: Mapping):
        """The metric's value in an evaluator result (None when absent or undefined)."""
        for part in self.path:
            if not isinstance(result, Mapping) or part not in result:
                return None
            result = result[part]
        return result


_DEPTH = "per image over valid pixels (Marigold), predictions clipped to the preset's range, mean over images"
_NORMALS = "angular error over pixels with a ground-truth normal, pooled over the set (DSINE)"
_SEMANTIC = "one confusion matrix over the set; IoU = TP / (TP + FP + FN), mean over classes present"
_COCO = "pycocotools COCOeval, iouType segm, 100 detections per image"
_REFERRING = "one sample per expression; cIoU = summed intersections / summed unions"


def _m(key, task, path, label, unit, higher, protocol, digits=3) -> Metric:
    return Metric(key, task, tuple(path.split(".")) if isinstance(path, str) else path, label, unit,
                  higher, protocol, digits)


_ALL = [
    _m("abs_rel", "depth", "metrics.abs_rel", "AbsRel", "", False, _DEPTH, 4),
    _m("delta1", "depth", "metrics.delta1", "delta1", "", True, _DEPTH),
    _m("delta2", "depth", "metrics.delta2", "delta2", "", True, _DEPTH),
    _m("delta3", "depth", "metrics.delta3", "delta3", "", True, _DEPTH),
    _m("rmse", "depth", "metrics.rmse", "RMSE (m)", "", False, _DEPTH),
    _m("silog", "depth", "metrics.silog", "SILog", "", False, _DEPTH, 2),
    _m("mean_angle_deg", "normals", "pooled.mean", "mean angular error", "deg", False, _NORMALS),
    _m("median_angle_deg", "normals", "pooled.median", "median angular error", "deg", False, _NORMALS),
    _m("miou", "semantic", "miou", "mIoU", "", True, _SEMANTIC),
    _m("pixel_acc", "semantic", "pixel_accuracy", "pixel accuracy", "", True, _SEMANTIC),
    _m("AP", "instance", "AP", "mask AP", "", True, _COCO),
    _m("AP50", "instance", "AP50", "mask AP50", "", True, _COCO),
    _m("ciou", "referring", "ciou", "cIoU", "", True, _REFERRING),
    _m("giou", "referring", "giou", "gIoU", "", True, "mean per-expression IoU"),
    _m("dice", "binary", "all.dice", "Dice", "%", True, "mean per-case Dice", 2),
    _m("hd95", "binary", "all.hd95", "HD95", "px", False, "mean per-case 95th-percentile Hausdorff (MedPy)", 2),
    _m("psnr_db", "restoration", "psnr", "PSNR", "dB", True, "RGB, data range 255, mean over images", 2),
    _m("ssim", "restoration", "ssim", "SSIM", "", True, "RGB, 11x11 Gaussian window, mean over images", 4),
]
METRICS: dict[str, Metric] = {m.key: m for m in _ALL}
#: Metrics that decide "beats the baseline" per task, and those reported beside them.
_HEADLINE = {"depth": ("abs_rel", "delta1"), "normals": ("mean_angle_deg",),
             "semantic": ("miou", "pixel_acc"), "instance": ("AP",), "referring": ("ciou", "giou"),
             "binary": ("dice", "hd95"), "restoration": ("psnr_db", "ssim"),
             "generation": ("psnr_db",)}
_EXTRA = {"normals": ("median_angle_deg",), "instance": ("AP50",)}
#: Tasks scored by another task's metrics.
_SCORED_AS = {"generation": "restoration"}


def headline(task: str) -> tuple[Metric, ...]:
    return tuple(METRICS[k] for k in _HEADLINE.get(task, ()))


def extra(task: str) -> tuple[Metric, ...]:
    return tuple(METRICS[k] for k in _EXTRA.get(task, ()))


def for_task(task: str) -> tuple[Metric, ...]:
    """Every metric of the table scoring `task`'s evaluator results."""
    task = _SCORED_AS.get(task, task)
    return tuple(m for m in _ALL if m.task == task)


def summary(task: str, result: Mapping) -> dict[str, float]:
    """{key: value} of the task's metrics present (and defined) in an evaluator result."""
    out = {}
    for m in for_task(task):
        value = m.value(result)
        if value is not None:
            out[m.key] = float(value)
    return out
