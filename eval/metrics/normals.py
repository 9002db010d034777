"""Surface-normal metrics: angular error statistics, pooled (DSINE) and per image (Marigold).

Angular error per pixel = arccos(clip(cos(pred, gt), -1, 1)) in degrees, with
cos = pred . gt / (max(|pred|, 1e-8) * max(|gt|, 1e-8)) as `torch.cosine_similarity`
computes it, so a zero predicted vector (NaN components count as 0) is 90 degrees off.
Valid pixels: ground truth of non-zero length (invalid normals are stored as 0-vectors),
finite, and inside the optional mask.

Two reductions, both reported (papers differ; say which one a table uses):
- "pooled": mean, median, RMSE and % of pixels under 5 / 7.5 / 11.25 / 22.5 / 30 degrees over
  all valid pixels of the dataset, as DSINE's `compute_normal_metrics`. The pooled median
  is read from a histogram of 1e-4-degree bins (exact to 5e-5 degrees), so memory stays
  constant however many pixels the dataset has.
- "per_image_mean": the same statistics per image, then the plain mean over images, as
  Marigold's normals evaluation (it rounds each image to 4 decimals; we do not).

Both vectors must be in the same camera frame (the project's is x right, y up, z toward the
camera); the error does not depend on which, as long as both agree.
"""

from __future__ import annotations

import numpy as np

from eval.metrics.summary import json_float, mean_over_records

THRESHOLDS_DEG = (5.0, 7.5, 11.25, 22.5, 30.0)
_BIN_DEG = 1e-4
_NUM_BINS = int(round(180.0 / _BIN_DEG)) + 1


def angular_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """float64 (...): angle between paired vectors pred, gt of shape (..., 3), in degrees."""
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.shape != g.shape or p.shape[-1] != 3:
        raise ValueError(f"need paired (..., 3) vectors, got {p.shape} and {g.shape}")
    norms = np.maximum(np.linalg.norm(p, axis=-1), 1e-8) * np.maximum(np.linalg.norm(g, axis=-1), 1e-8)
    cos = np.clip(np.einsum("...k,...k->...", p, g) / norms, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def error_statistics(errors: np.ndarray, thresholds=THRESHOLDS_DEG) -> dict[str, float]:
    """mean / median / rmse (degrees) and % under each threshold of (N,) angular errors."""
    e = np.asarray(errors, np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"need a non-empty (N,) array of errors, got shape {e.shape}")
    out = {"mean": float(e.mean()), "median": float(np.median(e)), "rmse": float(np.sqrt(np.mean(e**2)))}
    for t in thresholds:
        out[f"under_{t:g}"] = float(100.0 * np.mean(e < t))
    return out


class NormalsEvaluator:
    """Accumulates angular errors image by image; `result()` gives pooled and per-image means."""

    def __init__(self, thresholds=THRESHOLDS_DEG):
        self.thresholds = tuple(float(t) for t in thresholds)
        self.records: list[dict] = []
        self.skipped: list[str] = []
        self._hist = np.zeros(_NUM_BINS, np.int64)
        self._sum = 0.0
        self._sum_sq = 0.0
        self._under = np.zeros(len(self.thresholds), np.int64)
        self._count = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
            name: str = "") -> dict | None:
        """Scores one image.

        Args:
          pred, gt: float (H, W, 3) normals (pred need not be unit length); gt 0-vectors invalid.
          mask: optional bool (H, W) of pixels to score.
          name: image id stored with the scores.
        Returns:
          the image's statistics, or None if it has no valid pixel (skipped, listed in result).
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape or gt.ndim != 3 or gt.shape[-1] != 3:
            raise ValueError(f"normals {name!r}: need (H, W, 3) pred and gt, got {pred.shape} and {gt.shape}")
        valid = np.isfinite(gt).all(-1) & (np.linalg.norm(np.nan_to_num(gt), axis=-1) > 0)
        if mask is not None:
            valid &= np.asarray(mask, bool)
        if not valid.any():
            self.skipped.append(name)
            return None
        errors = angular_error_deg(np.nan_to_num(pred[valid], nan=0.0), gt[valid])
        record = {"name": name, **error_statistics(errors, self.thresholds), "num_pixels": int(errors.size)}
        self.records.append(record)
        self._hist += np.bincount(np.minimum((errors / _BIN_DEG).astype(np.int64), _NUM_BINS - 1),
                                  minlength=_NUM_BINS)
        self._sum += float(errors.sum())
        self._sum_sq += float(np.square(errors).sum())
        self._under += [(errors < t).sum() for t in self.thresholds]
        self._count += errors.size
        return record

    def merge(self, other: "NormalsEvaluator") -> None:
        """Adds another evaluator's images (same thresholds)."""
        if other.thresholds != self.thresholds:
            raise ValueError(f"cannot merge thresholds {other.thresholds} into {self.thresholds}")
        self.records += other.records
        self.skipped += other.skipped
        self._hist += other._hist
        self._sum += other._sum
        self._sum_sq += other._sum_sq
        self._under += other._under
        self._count += other._count

    def pooled_median(self) -> float:
        """Median of all pooled errors from the histogram (bin centre; NaN when empty)."""
        n = self._count
        if n == 0:
            return float("nan")
        cum = np.cumsum(self._hist)
        # np.median averages the two middle values of an even count; do the same with bins.
        lo = int(np.searchsorted(cum, (n - 1) // 2 + 1))
        hi = int(np.searchsorted(cum, n // 2 + 1))
        return (lo + hi + 1) / 2 * _BIN_DEG

    def result(self, per_image: bool = True) -> dict:
        """JSON-able statistics: "pooled" (DSINE) and "per_image_mean" (Marigold)."""
        keys = ["mean", "median", "rmse"] + [f"under_{t:g}" for t in self.thresholds]
        n = self._count
        pooled = {"mean": self._sum / n, "median": self.pooled_median(), "rmse": float(np.sqrt(self._sum_sq / n))} \
            if n else {k: float("nan") for k in ("mean", "median", "rmse")}
        for t, c in zip(self.thresholds, self._under):
            pooled[f"under_{t:g}"] = 100.0 * c / n if n else float("nan")
        out = {
            "benchmark": "normals",
            "units": "degrees; under_* in percent of pixels",
            "protocols": {"pooled": "DSINE: statistics over all valid pixels of the dataset",
                          "per_image_mean": "Marigold: statistics per image, then the mean over images"},
            "num_images": len(self.records),
            "num_pixels": n,
            "num_skipped": len(self.skipped),
            "skipped": list(self.skipped),
            "pooled": {k: json_float(pooled[k]) for k in keys},
            "per_image_mean": mean_over_records(self.records, keys),
        }
        if per_image:
            out["per_image"] = self.records
        return out
