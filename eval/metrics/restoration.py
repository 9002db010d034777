"""Image restoration metrics: PSNR and SSIM on RGB.

Conventions (state them in reports; restoration papers differ, many use the Y channel):
- Color space: RGB as stored (sRGB, no conversion), 8-bit values, data range 255.
- Crop: `crop` pixels removed from every border before scoring (default 0).
- PSNR = 10 log10(255^2 / MSE), MSE over all pixels and the 3 channels of one image; +inf
  for identical images (per image: None in JSON).
- Dataset PSNR = the mean over ALL images of the per-image PSNR capped at PSNR_CAP = 100 dB,
  so an identical pair counts as 100 dB, above any 8-bit image that differs by one level in
  one value up to about 150,000 values (10 log10(255^2 N) dB for N values), never dropped: a
  model exact on more images never scores lower than one off everywhere. `num_identical`
  counts the capped pairs.
- SSIM as Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (biased) variances, per channel, averaged over the pixels whose window lies
  inside the image (as MATLAB's 'valid' filtering), then over the channels; no automatic
  downsampling. Equal to `skimage.metrics.structural_similarity(a, b, channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`.
- Dataset scores are means over images.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from eval.metrics.summary import json_float, mean_over_records

DATA_RANGE = 255.0
_SIGMA = 1.5
_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 -> an 11x11 window
_PAD = 5
PSNR_CAP = 100.0  # dB, the dataset mean's value for an identical pair (see module docstring)


def _prepare(pred, gt, crop: int) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or gt.ndim != 3 or gt.shape[-1] != 3:
        raise ValueError(f"need two RGB (H, W, 3) images of one shape, got {pred.shape} and {gt.shape}")
    if crop:
        pred, gt = pred[crop:-crop, crop:-crop], gt[crop:-crop, crop:-crop]
    return pred.astype(np.float64), gt.astype(np.float64)


def psnr(pred: np.ndarray, gt: np.ndarray, crop: int = 0, data_range: float = DATA_RANGE) -> float:
    """PSNR in dB of two RGB (H, W, 3) images (uint8, or float on the same `data_range`)."""
    p, g = _prepare(pred, gt, crop)
    mse = float(np.mean((p - g) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(pred: np.ndarray, gt: np.ndarray, crop: int = 0, data_range: float = DATA_RANGE) -> float:
    """Mean SSIM of two RGB (H, W, 3) images (see the module docstring for the definition)."""
    p, g = _prepare(pred, gt, crop)
    if min(p.shape[:2]) < 2 * _PAD + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {p.shape[:2]}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    scores = []
    for ch in range(3):
        x, y = p[..., ch], g[..., ch]
        blur = lambda a: ndimage.gaussian_filter(a, _SIGMA, truncate=_TRUNCATE, mode="reflect")  # noqa: E731
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cov = blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s[_PAD:-_PAD, _PAD:-_PAD].mean())
    return float(np.mean(scores))


class RestorationEvaluator:
    """Per-image PSNR / SSIM, averaged over images."""

    def __init__(self, crop: int = 0):
        self.crop = int(crop)
        self.records: list[dict] = []

    def add(self, pred: np.ndarray, gt: np.ndarray, name: str = "") -> dict:
        """Scores one uint8 RGB (H, W, 3) restored image against its clean reference."""
        record = {"name": name, "psnr": psnr(pred, gt, self.crop), "ssim": ssim(pred, gt, self.crop)}
        self.records.append(record)
        return record

    def merge(self, other: "RestorationEvaluator") -> None:
        if other.crop != self.crop:
            raise ValueError(f"cannot merge crop={other.crop} into crop={self.crop}")
        self.records += other.records

    def result(self, per_image: bool = False) -> dict:
        """JSON-able means over all images (PSNR capped at PSNR_CAP; identical images counted)."""
        finite = [r for r in self.records if math.isfinite(r["psnr"])]
        capped = [{"psnr": min(r["psnr"], PSNR_CAP)} for r in self.records]
        out = {
            "benchmark": "restoration",
            "protocol": f"RGB, data range 255, crop {self.crop} px; PSNR mean over images, each "
                        f"capped at {PSNR_CAP:g} dB; SSIM 11x11 Gaussian sigma 1.5 per channel",
            "num_images": len(self.records),
            "num_identical": len(self.records) - len(finite),
            "psnr_cap_db": PSNR_CAP,
            "psnr": mean_over_records(capped, ["psnr"])["psnr"],
            "ssim": mean_over_records(self.records, ["ssim"])["ssim"],
        }
        if per_image:
            out["per_image"] = [{**r, "psnr": json_float(r["psnr"])} for r in self.records]
        return out
