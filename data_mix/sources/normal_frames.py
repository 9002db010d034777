"""Surface-normal conventions of the datasets, converted to the Vision Banana frame.

Vision Banana frame (docs/contracts.md): camera coordinates with x right, y up, z toward the
camera (the OpenGL camera frame); a visible surface has z > 0. Records carry float32 (H, W, 3)
unit vectors in this frame and the 0-vector where the normal is unknown.

Conventions read here (each a per-axis sign flip of the stored components):

| name            | stored axes                             | to Vision Banana |
|-----------------|-----------------------------------------|------------------|
| "vision_banana" | x right, y up, z toward camera (OpenGL) | ( x,  y,  z)     |
| "opengl"        | same as above                           | ( x,  y,  z)     |
| "opencv"        | x right, y down, z forward (COLMAP)     | ( x, -y, -z)     |
| "dsine"         | x left, y up, z toward camera           | (-x,  y,  z)     |

"dsine": DSINE (Bae & Davison, CVPR 2024) computes rays as ((u-cx)/fx, (v-cy)/fy, 1) in OpenCV
axes and constrains predicted normals to cos(normal, ray) > 0 (its RayReLU), i.e. it stores the
negated OpenCV outward normal = (left, up, toward camera). Its ground-truth PNGs for NYUv2 /
ScanNet / iBims / Sintel (8-bit) and Virtual KITTI (16-bit) hold (n + 1) / 2 in R, G, B, with
all-zero pixels invalid. Note that the Vision Banana colour encoding R = (1 - x)/2,
G = (1 + y)/2, B = (1 + z)/2 therefore renders a DSINE map with the same colours as DSINE's
own PNGs.
"""

from __future__ import annotations

import numpy as np

from data_mix.sources.base import RecordError

# Component signs taking a stored normal to the Vision Banana frame.
SIGNS: dict[str, tuple[float, float, float]] = {
    "vision_banana": (1.0, 1.0, 1.0),
    "opengl": (1.0, 1.0, 1.0),
    "opencv": (1.0, -1.0, -1.0),
    "dsine": (-1.0, 1.0, 1.0),
}


def check_convention(convention: str) -> str:
    if convention not in SIGNS:
        raise ValueError(f"unknown normal convention {convention!r}; expected one of {sorted(SIGNS)}")
    return convention


def to_vision_banana(normals: np.ndarray, convention: str, *, what: str,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """float32 (H, W, 3) unit normals in the Vision Banana frame; 0-vector where invalid.

    Args:
      normals: (H, W, 3) float vectors in `convention` (any length; renormalized here).
      convention: a key of SIGNS.
      what: the source file, named in errors.
      valid: optional bool (H, W); pixels outside it become 0-vectors. Pixels whose vector is
        non-finite or shorter than 1e-6 are invalid as well.
    """
    check_convention(convention)
    n = np.asarray(normals, dtype=np.float32)
    if n.ndim != 3 or n.shape[2] != 3:
        raise RecordError(f"{what}: expected normals of shape (H, W, 3), got {n.shape}")
    n = n * np.asarray(SIGNS[convention], np.float32)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    ok = np.isfinite(norm[..., 0]) & (norm[..., 0] > 1e-6)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    out = np.zeros_like(n)
    np.divide(n, norm, out=out, where=ok[..., None])
    return out


def from_rgb(rgb: np.ndarray, convention: str, *, what: str) -> np.ndarray:
    """Normals from an RGB-encoded map holding (n + 1) / 2 per channel (8- or 16-bit).

    All-zero pixels are invalid (the DSINE release marks missing ground truth this way).
    Returns float32 (H, W, 3) in the Vision Banana frame.
    """
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise RecordError(f"{what}: expected an 8- or 16-bit normal map, got {arr.dtype}")
    valid = arr.any(axis=2)
    n = arr.astype(np.float32) / scale * 2.0 - 1.0
    return to_vision_banana(n, convention, what=what, valid=valid)
