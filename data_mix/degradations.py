"""Degradations for the restoration task: clean uint8 RGB image -> degraded input of that kind.

    degraded, params = degrade("deblur", image, rng)        # uint8 (H, W, 3), JSON-able dict
    degraded, params = degrade("dehaze", image, rng, depth=depth_m)

Photometric only: the output has the input's size (super-resolution scales down and back up),
as batches need. Each kind draws its parameters from `rng` (a numpy Generator) and reports
them in `params`, so an example's degradation can be logged and reproduced. The kinds are the
names of `tasks.restoration.KINDS` that can be synthesized (`DEGRADATIONS`).

Each per-kind function takes the uint8 (H, W, 3) image, the generator and the record's metric
depth (float (H, W) metres or None; only haze reads it) and returns (float32 (H, W, 3) in 0..255
units, unclipped, params); `degrade` rounds and clips once for all of them.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

# (uint8 image (H, W, 3), rng, depth (H, W) metres or None) -> (float32 (H, W, 3), params).
Degradation = Callable[[np.ndarray, np.random.Generator, np.ndarray | None], tuple[np.ndarray, dict]]


def add_noise(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """denoise: additive Gaussian noise, sigma 5-40 levels."""
    del depth
    x = img.astype(np.float32)
    sigma = float(rng.uniform(5, 40))
    return x + rng.normal(0, sigma, x.shape).astype(np.float32), {"sigma": sigma}


def blur(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """deblur: Gaussian blur (sigma 1-3.5 px) or, half the time, linear motion blur (7-21 px
    long, any angle); reflected borders."""
    del depth
    x = img.astype(np.float32)
    if rng.random() < 0.5:
        sigma = float(rng.uniform(1.0, 3.5))
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), {"gaussian_sigma": sigma}
    length, angle = int(rng.integers(7, 22)), float(rng.uniform(0, 180))
    kernel = np.zeros((length, length), np.float32)
    c, dx, dy = (length - 1) / 2, np.cos(np.radians(angle)), np.sin(np.radians(angle))
    r = (length - 1) / 2
    cv2.line(kernel, (round(c - r * dx), round(c - r * dy)), (round(c + r * dx), round(c + r * dy)), 1.0, 1)
    out = cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    return out, {"motion_length": length, "motion_angle_deg": angle}


def darken(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """low_light: exposure x0.02-0.2 in linear light (gamma 2.2), then mild sensor noise (sigma
    1-5 levels), as in real dark captures."""
    del depth
    x = img.astype(np.float32)
    gain, sigma = float(rng.uniform(0.02, 0.2)), float(rng.uniform(1, 5))
    linear = (x / 255.0) ** 2.2 * gain
    out = 255.0 * linear ** (1 / 2.2) + rng.normal(0, sigma, x.shape).astype(np.float32)
    return out, {"exposure": gain, "noise_sigma": sigma}


def add_haze(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """dehaze: the atmospheric scattering model I = J t + A (1 - t), t = exp(-beta d), beta
    0.05-0.4 per metre, airlight A 0.75-0.95 of white. d is `depth` in metres (NaN: the farthest
    valid depth; +inf sky: t = 0) or, without depth, a ramp from 10 m (top) to 1 m (bottom)."""
    x = img.astype(np.float32)
    h, w = img.shape[:2]
    if depth is not None:
        d = np.asarray(depth, np.float32)
        finite = np.isfinite(d)
        far = float(d[finite].max()) if finite.any() else 10.0
        d = np.where(np.isnan(d), far, d)  # +inf (sky) stays inf: fully hazed
    else:
        d = np.broadcast_to(np.linspace(10.0, 1.0, h, dtype=np.float32)[:, None], (h, w))
    beta = float(rng.uniform(0.05, 0.4))
    airlight = float(rng.uniform(0.75, 0.95)) * 255.0
    t = np.exp(-beta * d)[..., None]
    return x * t + airlight * (1 - t), {"beta_per_m": beta, "airlight": airlight}


def jpeg_compress(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """jpeg_artifacts: a JPEG round trip at quality 5-30."""
    del depth
    quality = int(rng.integers(5, 31))
    # OpenCV codecs are BGR.
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32), {"quality": quality}


def downscale(img: np.ndarray, rng: np.random.Generator, depth=None) -> tuple[np.ndarray, dict]:
    """super_resolution: area-downscaled by an integer 2-4x, scaled back up bilinearly to the
    input size."""
    del depth
    h, w = img.shape[:2]
    scale = int(rng.integers(2, 5))
    small = cv2.resize(img, (max(1, w // scale), max(1, h // scale)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32), {"scale": scale}


# Restoration kind (names of `tasks.restoration.KINDS`) -> the degradation that makes its input.
KINDS: dict[str, Degradation] = {
    "denoise": add_noise,
    "deblur": blur,
    "low_light": darken,
    "dehaze": add_haze,
    "jpeg_artifacts": jpeg_compress,
    "super_resolution": downscale,
}
DEGRADATIONS = tuple(KINDS)


def degrade(kind: str, image: np.ndarray, rng: np.random.Generator, *,
            depth: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(degraded uint8 (H, W, 3), JSON-able parameters) for `kind` in DEGRADATIONS.

    `image` is uint8 (H, W, 3) RGB; `depth` the record's metric depth (float (H, W), metres,
    NaN invalid, +inf sky), read by "dehaze" only. The per-kind functions above say what each
    kind draws.
    """
    fn = KINDS.get(kind)
    if fn is None:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")
    out, params = fn(np.asarray(image), rng, depth)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), params
