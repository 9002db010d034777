"""Monocular depth metrics, computed per image and averaged over images (Marigold protocol).

Per image, on the valid pixels (preset range x evaluation crop x optional dataset mask), with
p = prediction and g = ground truth in metres (float64):

    abs_rel  = mean(|p - g| / g)              sq_rel   = mean((p - g)^2 / g)
    rmse     = sqrt(mean((p - g)^2))          rmse_log = sqrt(mean((ln p - ln g)^2))
    log10    = mean(|log10 p - log10 g|)      i_rmse   = sqrt(mean((1/p - 1/g)^2))
    silog    = 100 * sqrt(mean(e^2) - mean(e)^2),  e = ln p - ln g
    delta_k  = fraction of pixels with max(p/g, g/p) < 1.25^k,  k = 1, 2, 3

as `prs-eth/Marigold src/util/metric.py` defines them (the same as BTS / ZoeDepth
`compute_errors`). The dataset score is the plain mean of the per-image scores; images with
no valid pixel are skipped and counted.

Order per image, as Marigold's `script/depth/eval.py`: optional alignment on the valid pixels
(metric models: none), then clip to the preset's prediction range, then to >= 1e-6.

Alignment (for affine-invariant baselines):
- "least_squares": scale and shift fitted in depth, p' = s p + t.
- "least_squares_disparity": the prediction is a (relative) disparity; s, t fitted against
  1/g, then clipped to >= 1e-3 and inverted to depth (Depth Anything / MiDaS baselines).
- "median": p' = p * median(g) / median(p) (scale only).

Infinite predictions (+inf: the depth codec's white, "far"; or an inf disparity) are left out
of the fit, as a least-squares fit over them is undefined (numpy's SVD does not converge), and
keep their value through the alignment: an infinite depth is then clipped to the preset's
upper cap like any too-far prediction, an infinite disparity gives depth 0, clipped to the
lower cap. Marigold's and Depth Anything's scripts never see inf (their models output finite
maps) and would raise; this is the behaviour of metric mode (no alignment), where inf is
clipped to the cap. With fewer than two finite fit pixels the alignment is the identity
(scale 1, shift 0).
"""

from __future__ import annotations

import numpy as np

from eval.metrics.depth_presets import DepthPreset, eval_mask, get_preset
from eval.metrics.summary import json_float, mean_over_records

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "i_rmse",
           "delta1", "delta2", "delta3")
ALIGNMENTS = ("none", "least_squares", "least_squares_disparity", "median")


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The metrics over paired valid pixels.

    Args:
      pred, gt: float (N,) depths in metres, all > 0 and finite.
    Returns:
      dict metric name -> float (see the module docstring).
    """
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.shape != g.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"need two non-empty (N,) arrays, got {p.shape} and {g.shape}")
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(log_diff**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        # Rounding can make the variance a hair negative for a perfect prediction.
        "silog": float(100.0 * np.sqrt(max(np.mean(log_diff**2) - np.mean(log_diff) ** 2, 0.0))),
        "i_rmse": float(np.sqrt(np.mean((1.0 / p - 1.0 / g) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
    }


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Least-squares (s, t) minimising sum (s * pred + t - target)^2 over (N,) arrays; (1, 0)
    when fewer than two pairs are given."""
    if len(pred) < 2:
        return 1.0, 0.0
    a = np.stack([np.asarray(pred, np.float64), np.ones(len(pred))], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, np.asarray(target, np.float64), rcond=None)
    return float(s), float(t)


def align(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str) -> tuple[np.ndarray, dict]:
    """Aligns a whole prediction to the ground truth, fitted on `valid` pixels.

    Args:
      pred: float (H, W) depth (or disparity for "least_squares_disparity").
      gt: float (H, W) depth in metres.
      valid: bool (H, W) pixels used for the fit.
      method: one of ALIGNMENTS.
    Returns:
      the aligned depth, float64 (H, W), and the fitted parameters.
    """
    pred = np.asarray(pred, np.float64)
    if method == "none":
        return pred, {}
    finite = np.isfinite(pred)
    fit = valid & finite  # inf predictions: out of the fit, kept as they are (module docstring)

    def affine(s, t):
        with np.errstate(invalid="ignore"):
            return np.where(finite, pred * s + t, pred)

    if method == "least_squares":
        s, t = fit_scale_shift(pred[fit], gt[fit])
        return affine(s, t), {"scale": s, "shift": t}
    if method == "least_squares_disparity":
        fit &= (gt > 0) & (pred > 0)
        s, t = fit_scale_shift(pred[fit], 1.0 / gt[fit])
        disparity = np.maximum(affine(s, t), 1e-3)  # Marigold: avoid zero disparity
        return 1.0 / disparity, {"scale": s, "shift": t}
    if method == "median":
        s = float(np.median(gt[fit]) / np.median(pred[fit])) if fit.any() else 1.0
        return pred * s, {"scale": s}
    raise ValueError(f"unknown alignment {method!r}; expected one of {ALIGNMENTS}")


class DepthEvaluator:
    """Scores depth maps image by image with a dataset preset; `result()` averages over images."""

    def __init__(self, preset: str | DepthPreset, alignment: str = "none"):
        if alignment not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {alignment!r}; expected one of {ALIGNMENTS}")
        self.preset = get_preset(preset)
        self.alignment = alignment
        self.records: list[dict] = []
        self.skipped: list[str] = []

    def valid_mask(self, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """bool (H, W): the pixels the preset scores for this ground truth (and dataset mask)."""
        p = self.preset
        if p.shape is not None and gt.shape != p.shape:
            raise ValueError(f"preset {p.name!r} scores {p.shape} depth maps, got {gt.shape}"
                             + (" (apply kitti_benchmark_crop first)" if p.name.startswith("kitti") else ""))
        valid = np.isfinite(gt) & (gt > 0)
        if p.gt_range_mask:
            valid &= (gt > p.min_depth) & (gt < p.max_depth)
        elif mask is None:
            raise ValueError(f"preset {p.name!r} needs the dataset's validity mask")
        if mask is not None:
            if mask.shape != gt.shape:
                raise ValueError(f"mask shape {mask.shape} differs from ground truth {gt.shape}")
            valid &= mask.astype(bool)
        return valid & eval_mask(p.crop, gt.shape)

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
            name: str = "") -> dict | None:
        """Scores one image.

        Args:
          pred: float (H, W) predicted depth in metres (+inf allowed: white = far), or
            disparity with alignment "least_squares_disparity".
          gt: float (H, W) ground-truth depth in metres; NaN / inf / <= 0 = invalid.
          mask: optional bool (H, W) dataset validity mask (required for DIODE).
          name: image id stored with the scores.
        Returns:
          the image's scores (with "name" and alignment parameters), or None if it has no
          valid pixel (then it is skipped and listed in the result).
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt, np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {name!r} has shape {pred.shape}, ground truth {gt.shape}")
        if np.isnan(pred).any():
            raise ValueError(f"prediction {name!r} holds {int(np.isnan(pred).sum())} NaN pixels")
        valid = self.valid_mask(gt, mask)
        if not valid.any():
            self.skipped.append(name)
            return None
        aligned, params = align(pred, gt, valid, self.alignment)
        low, high = self.preset.pred_range
        p = np.maximum(np.clip(aligned[valid], low, high), 1e-6)
        record = {"name": name, **depth_metrics(p, gt[valid]), "num_pixels": int(valid.sum()), **params}
        self.records.append(record)
        return record

    def merge(self, other: "DepthEvaluator") -> None:
        """Adds the images scored by another evaluator (same preset and alignment)."""
        if (other.preset, other.alignment) != (self.preset, self.alignment):
            raise ValueError("cannot merge depth evaluators with different presets or alignments")
        self.records += other.records
        self.skipped += other.skipped

    def result(self, per_image: bool = True) -> dict:
        """JSON-able: mean of each metric over images, the protocol, and the per-image scores."""
        out = {
            "benchmark": f"depth/{self.preset.name}",
            "protocol": "per-image metrics averaged over images (Marigold)",
            "preset": self.preset.to_json(),
            "alignment": self.alignment,
            "num_images": len(self.records),
            "num_skipped": len(self.skipped),
            "skipped": list(self.skipped),
            "metrics": mean_over_records(self.records, METRICS),
        }
        if per_image:
            out["per_image"] = [{k: (json_float(v) if isinstance(v, float) else v) for k, v in r.items()}
                                for r in self.records]
        return out
