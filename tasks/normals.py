"""Surface normals <-> RGB, in the Vision Banana camera frame, and converters between frames.

Frame: x right, y up, z toward the camera (a camera-facing wall is (0, 0, 1)). Encoding:

    R = (1 - x) / 2,  G = (1 + y) / 2,  B = (1 + z) / 2,   scaled to 0..255 and rounded,

so left-facing (-1, 0, 0) is pinkish red, up (0, 1, 0) light green, camera-facing (0, 0, 1)
light blue/purple. This is the same image as the usual normal-map PNGs of DSINE and Omnidata
(see the converters below), so their files decode with `decode` directly.

Invalid normals: a vector is valid when it is finite with norm >= MIN_NORM (0.5; real normals
have norm 1, the records' invalid marker is the zero vector, and shorter vectors come from
averaging opposite normals, so their direction means little). Invalid pixels encode as mid-grey
(128, 128, 128), the colour of the zero vector. Decoding renormalises every pixel; a colour
whose raw vector is shorter than MIN_NORM (mid-grey and its neighbourhood, never a real
normal's colour) decodes to (0, 0, 1), facing the camera, and `rgb_valid_mask` flags it.

Precision: 8-bit channels give a round-trip error of at most 0.39 deg (0.17 deg on average).

Other sources' vectors and what they are here (ours point out of the surface, i.e. toward
the camera side of visible surfaces):
- OpenCV / COLMAP camera frame (x right, y down, z forward), outward: (x, -y, -z) here.
- DSINE (baegwangbin/DSINE): its normals satisfy n . p > 0 for camera-frame points p in
  OpenCV coordinates (`plane_svd.py` flips them so), i.e. -outward in OpenCV axes, which is
  (-x, y, z) here; its PNGs store (n + 1) / 2 * 255 with black marking invalid pixels (mask
  those before decoding: black itself decodes to a direction).
- Omnidata (EPFL-VILAB/omnidata): the annotator renders Blender's camera-space normal pass
  (x right, y up, z toward the camera) as RGB = n / 2 + 1/2 with the red channel inverted, so
  its PNGs equal ours and its vectors (2 * rgb - 1, as its models output) are (-x, y, z) here.
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.colormaps import as_rows, check_rgb, row_blocks

NAME = "normals"
MIN_NORM = 0.5
FALLBACK = (0.0, 0.0, 1.0)       # decoded where the colour carries no direction

# Decoding works on exact integers: the numerators (255 - 2R, 2G - 255, 2B - 255) of
# (x, y, z) * 255 (one affine OpenCV transform), their squared norm s (an integer < 2**24,
# exact in float32 in any order), k = 1 / sqrt(s) and n = numerator * k. Each float32 step
# is one IEEE operation, so numpy and jax agree bit for bit. A colour is degenerate when its
# raw vector is shorter than MIN_NORM, i.e. k > 1 / (255 * MIN_NORM).
_NUMERATORS = np.array([[-2, 0, 0, 255], [0, 2, 0, -255], [0, 0, 2, -255]], np.float32)  # 3x4
_SUM = np.ones((1, 3), np.float32)
_K_LIMIT = np.float32(1 / (255 * MIN_NORM))


def valid_mask(normals) -> np.ndarray:
    """bool (...): finite vectors of norm >= MIN_NORM, for float normals (..., 3)."""
    return _squared_norms(normals)[2]


def _squared_norms(normals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors as float64, squared norms, validity) of (..., 3) normals."""
    n = np.asarray(normals, np.float64)
    if n.shape[-1:] != (3,):
        raise ValueError(f"normals must have shape (..., 3), got {n.shape}")
    s = n[..., 0] * n[..., 0] + n[..., 1] * n[..., 1] + n[..., 2] * n[..., 2]
    with np.errstate(invalid="ignore"):
        valid = (s >= MIN_NORM * MIN_NORM) & (s < np.inf)     # NaN and inf fail both ways
    return n, s, valid


def encode(normals) -> np.ndarray:
    """Normals (..., 3) in the Vision Banana frame -> uint8 (..., 3); invalid -> (128, 128, 128).

    Valid vectors are normalised first, so unnormalised inputs encode their direction.
    """
    n, s, valid = _squared_norms(normals)
    if not valid.all():                                   # invalid -> the zero vector
        n = np.where(valid[..., None], n, 0.0)
        s = np.where(valid, s, 1.0)
    scale = np.sqrt(s)
    np.divide(127.5, scale, out=scale)
    out = np.empty(n.shape, np.float64)
    for c, sign in enumerate((-1.0, 1.0, 1.0)):          # R = (1 - x)/2, G = (1 + y)/2, ...
        np.multiply(n[..., c], scale, out=out[..., c])
        if sign < 0:
            np.negative(out[..., c], out=out[..., c])
    out += 127.5
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def decode(rgb) -> np.ndarray:
    """uint8 (..., 3) -> float32 (..., 3) unit normals (FALLBACK where the colour is degenerate).

    Runs in row blocks of ~64k pixels (temporaries stay in cache): numerators by one affine
    transform, k = 1 / sqrt(sum of squares), then three in-place multiplies. No tables.
    """
    rgb = check_rgb(rgb, "normals.decode")
    if rgb.size == 0:
        return np.zeros(rgb.shape, np.float32)
    img = as_rows(rgb)
    out = np.empty(img.shape, np.float32)
    for rows in row_blocks(*img.shape[:2]):
        dst = out[rows]
        k = _inverse_norms(img[rows], dst)
        for c in range(3):                                   # strided, in place
            np.multiply(dst[..., c], k, out=dst[..., c])
        bad = k > _K_LIMIT
        if bad.any():
            dst[bad] = FALLBACK
    return out.reshape(rgb.shape)


def rgb_valid_mask(rgb) -> np.ndarray:
    """bool (...): colours that decode to a real direction (raw vector norm >= MIN_NORM)."""
    rgb = check_rgb(rgb, "normals.rgb_valid_mask")
    if rgb.size == 0:
        return np.zeros(rgb.shape[:-1], bool)
    img = as_rows(rgb)
    out = np.empty(img.shape[:2], bool)
    for rows in row_blocks(*img.shape[:2]):
        out[rows] = _inverse_norms(img[rows], np.empty(img[rows].shape, np.float32)) <= _K_LIMIT
    return out.reshape(rgb.shape[:-1])


def _inverse_norms(src: np.ndarray, numerators: np.ndarray) -> np.ndarray:
    """Numerators of uint8 src (rows, cols, 3) written to `numerators`; returns k (rows, cols)."""
    cv2.transform(src.astype(np.float32), _NUMERATORS, dst=numerators)
    s = cv2.transform(cv2.multiply(numerators, numerators), _SUM)       # exact integers
    return np.divide(np.float32(1), np.sqrt(s))


def decode_jax(rgb):
    """jax.numpy twin of `decode` (jittable; same float32 arithmetic, no large tables).

    Bit-identical to `decode` on CPU; accelerators may round sqrt / division differently
    (within a float32 ulp or two).
    """
    import jax
    import jax.numpy as jnp

    rgb = jnp.asarray(rgb)
    if rgb.dtype != jnp.uint8 or rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise TypeError(f"normals.decode_jax expects uint8 (..., 3), got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(jnp.int32)
    num = jnp.stack([255 - 2 * x[..., 0], 2 * x[..., 1] - 255, 2 * x[..., 2] - 255], -1)
    num = num.astype(jnp.float32)
    s = (num[..., 0] * num[..., 0] + num[..., 1] * num[..., 1]) + num[..., 2] * num[..., 2]
    # The barrier keeps XLA from turning 1 / sqrt into an rsqrt that rounds differently.
    k = 1 / jax.lax.optimization_barrier(jnp.sqrt(s))
    out = num * k[..., None]
    return jnp.where((k > _K_LIMIT)[..., None], jnp.asarray(FALLBACK, jnp.float32), out)


# Frame converters (unit or not; they only permute signs, so each is its own inverse) -------

def _flip(normals, signs) -> np.ndarray:
    n = np.asarray(normals)
    if n.shape[-1:] != (3,):
        raise ValueError(f"normals must have shape (..., 3), got {n.shape}")
    return n * np.asarray(signs, n.dtype if np.issubdtype(n.dtype, np.floating) else np.float64)


def from_opencv(normals) -> np.ndarray:
    """OpenCV camera frame (x right, y down, z forward; outward normals) -> ours."""
    return _flip(normals, (1, -1, -1))


def to_opencv(normals) -> np.ndarray:
    """Ours -> OpenCV camera frame (x right, y down, z forward)."""
    return _flip(normals, (1, -1, -1))


def from_dsine(normals) -> np.ndarray:
    """DSINE vectors (n . p > 0 in OpenCV camera coordinates) -> ours."""
    return _flip(normals, (-1, 1, 1))


def to_dsine(normals) -> np.ndarray:
    """Ours -> DSINE vectors."""
    return _flip(normals, (-1, 1, 1))


def from_omnidata(normals) -> np.ndarray:
    """Omnidata vectors (2 * png / 255 - 1, what its models output) -> ours."""
    return _flip(normals, (-1, 1, 1))


def to_omnidata(normals) -> np.ndarray:
    """Ours -> Omnidata vectors."""
    return _flip(normals, (-1, 1, 1))


# Prompts ------------------------------------------------------------------------------------

_PROMPTS = (
    "Generate a surface normal map of the input image.",
    "Predict the surface normal of this scene.",
    "Estimate the per-pixel surface normals of this photo.",
    "Render the orientation of every visible surface as a normal map.",
    "Produce a camera-space surface normal map of the given image"
    " (x right, y up, z toward the camera).",
)


def render_prompt(rng: np.random.Generator) -> str:
    """An instruction asking for a surface normal map, in a random phrasing."""
    return _PROMPTS[rng.integers(len(_PROMPTS))]


def parse_prompt(prompt: str) -> dict:
    """Normal prompts state no decoding parameters: always {}."""
    del prompt
    return {}
