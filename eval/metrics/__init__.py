"""Evaluation metrics equal to the official tools, one module per task.

`for_task(task, **spec)` (registry) gives the evaluator of a task, the one scoring path of the
trainer, the demo and every benchmark; `table` names every metric (key, label, unit,
direction, protocol). Every evaluator accumulates image by image (`add`), can absorb another one (`merge`, for
several workers or hosts) and finalizes to a JSON-able dict (`result`; undefined scores are
None). Modules:

    cityscapes        CityscapesEvaluator: IoU, category IoU, iIoU as cityscapesScripts
    cityscapes_files  evaluate_files / find_predictions: scoring PNG folders on all cores
    confusion         joint_histogram, ConfusionMatrix: plain K-class mIoU
    depth             DepthEvaluator (+ depth_presets): Marigold / Depth Anything protocol
    normals           NormalsEvaluator: angular errors pooled (DSINE) and per image (Marigold)
    referring         ReferringEvaluator: cIoU, gIoU, precision@0.5..0.9
    coco              CocoSegmEvaluator: pycocotools COCOeval segm AP
    binary            BinaryMaskEvaluator, dice, hd95, strata (easy / hard 5%)
    restoration       RestorationEvaluator, psnr, ssim (RGB)
    registry          for_task, SemanticEvaluator, InstanceEvaluator, BinaryMasks, Referring
    table             METRICS, Metric, headline / extra / summary
    jsonio            jsonable (strict JSON, NaN / inf -> null, counted), write_json, read_jsonl
    grids             image_grid: the one PNG grid of panels (benchmark and demo reports)

A leaf library: it imports numpy, scipy, OpenCV, pycocotools and `tasks`, nothing else of
the project, so the trainer (`vision_banana`) and every benchmark may import it.

Names below are imported on first use, so `import eval.metrics` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CityscapesEvaluator": "cityscapes",
    "evaluate_files": "cityscapes_files",
    "find_predictions": "cityscapes_files",
    "ConfusionMatrix": "confusion",
    "joint_histogram": "confusion",
    "DepthEvaluator": "depth",
    "depth_metrics": "depth",
    "PRESETS": "depth_presets",
    "kitti_benchmark_crop": "depth_presets",
    "NormalsEvaluator": "normals",
    "angular_error_deg": "normals",
    "ReferringEvaluator": "referring",
    "CocoSegmEvaluator": "coco",
    "BinaryMaskEvaluator": "binary",
    "dice": "binary",
    "hd95": "binary",
    "strata": "binary",
    "RestorationEvaluator": "restoration",
    "psnr": "restoration",
    "ssim": "restoration",
    "for_task": "registry",
    "SemanticEvaluator": "registry",
    "InstanceEvaluator": "registry",
    "table": None,
    "jsonio": None,
    "grids": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'eval.metrics' has no attribute {name!r}") from None
    if module is None:  # a submodule
        return importlib.import_module(f"eval.metrics.{name}")
    return getattr(importlib.import_module(f"eval.metrics.{module}"), name)
