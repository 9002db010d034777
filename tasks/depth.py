"""Metric depth <-> RGB: the Vision Banana power transform walked along a colour path.

Encoding (Vision Banana, arXiv 2604.20329): depth d in metres is squashed to t in [0, 1) by

    f(d) = 1 - (1 + d / (|lam| c)) ** (lam + 1),        lam < -1, c > 0,

which with the defaults lam = -3, c = 10/3 is f(d) = 1 - (1 + d/10) ** -2. t is then walked
along a colour path (`tasks.colormaps`): by default the 7 edges of the RGB cube
black-red-yellow-green-cyan-blue-magenta-white, each edge 1/7 of t, so the cube corners mark
0, 0.80, 1.83, 3.23, 5.28, 8.71, 16.5 m and infinity. Outputs are 8-bit points on the path
(7 * 255 = 1785 steps, "levels": one level is about 3.7 mm at 1 m, 2.2 cm at 10 m, 2 m at 80 m).

Relation to Barron's power transform ("A Power Transform", 2025; Zip-NeRF eq. 4),
P(x, l) = |l - 1| / l * ((x / |l - 1| + 1) ** l - 1): f(d) = P(d / c, lam + 1) / P(inf, lam + 1),
i.e. Barron's transform with exponent l = lam + 1 = -2 and scale c = 10/3, normalised by its
limit 3/2. Barron's transform with l = -3 taken literally (f = 1 - (1 + 3d/40) ** -3) would
put the corners at 0.70, 1.58, 2.73, 4.35, 6.91, 12.2 m, which does not match the
paper's own formula and corner list; we keep the paper's formula and its (lam, c) labels.

Invalid depth: NaN, -inf and d <= 0 encode as black (t = 0, decodes to 0 m); +inf (sky)
encodes as white (decodes to +inf); finite depths beyond the middle of the last level (about
587 m at the defaults) also round to white. `valid_mask` is True only for finite d > 0, so it
flags both black and white after decoding.

Decoding takes the exact nearest point on the path for every 8-bit colour (Euclidean RGB by
default; `metric="ycbcr"` weights luma over chroma for JPEG outputs), inverts the walk and f.
Both are one precomputed 256**3 float32 table (built once per colormap/metric/lam/c, about a
second for the rainbow), so decoding is a gather per pixel.

Augmentation colormaps (plasma, inferno, viridis, gray) use the same t with matplotlib's maps;
the prompt names the colormap and `parse_prompt` recovers it.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from tasks import colormaps

NAME = "depth"
LAMBDA = -3.0
C = 10.0 / 3.0
COLORMAPS = colormaps.NAMES


def _check_params(lam: float, c: float) -> tuple[float, float]:
    if not lam < -1:
        raise ValueError(f"depth power transform needs lam < -1 (got lam={lam!r})")
    if not c > 0:
        raise ValueError(f"depth power transform needs c > 0 (got c={c!r})")
    return float(lam), float(c)


def transform(depth, lam: float = LAMBDA, c: float = C) -> np.ndarray:
    """f(d) in [0, 1) for depth in metres (float64, same shape); +inf -> 1, invalid -> 0."""
    lam, c = _check_params(lam, c)
    d = np.asarray(depth, np.float64)
    base = d / (abs(lam) * c)
    base += 1.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if lam == -3.0:                      # the default exponent -2: no pow() needed
            np.multiply(base, base, out=base)
            np.divide(1.0, base, out=base)
        else:
            np.power(base, lam + 1.0, out=base)
    np.subtract(1.0, base, out=base)
    return np.where(d > 0, base, 0.0)        # NaN, -inf and d <= 0 -> 0; +inf gives 1 above


def inverse_transform(t, lam: float = LAMBDA, c: float = C) -> np.ndarray:
    """Depth in metres (float64) for t in [0, 1]; t = 1 -> +inf."""
    lam, c = _check_params(lam, c)
    t = np.clip(np.asarray(t, np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return abs(lam) * c * ((1.0 - t) ** (1.0 / (lam + 1.0)) - 1.0)


def valid_mask(depth) -> np.ndarray:
    """bool, same shape: True where depth is a finite metric depth > 0."""
    d = np.asarray(depth)
    return np.isfinite(d) & (d > 0)


def encode(depth, colormap: str = "rainbow", lam: float = LAMBDA, c: float = C) -> np.ndarray:
    """Metric depth (..., H, W) in metres -> uint8 (..., H, W, 3) on the colormap's path.

    See the module docstring for invalid values; the rainbow output is always an exact 8-bit
    point of the path (the nearest level to f(d)).
    """
    return colormaps.rgb_at(transform(depth, lam, c), colormaps.check_name(colormap))


def decode(rgb, colormap: str = "rainbow", lam: float = LAMBDA, c: float = C,
           metric: str = "rgb") -> np.ndarray:
    """uint8 (..., 3) colour image -> float32 (...) metric depth in metres.

    Any content decodes (nearest path point); pure white -> +inf, black -> 0. Raises
    TypeError / ValueError only for a non-uint8 array or a last axis other than 3.
    `colormap` is what the prompt stated (`parse_prompt`); `metric="ycbcr"` picks the nearest
    point with luma weighted over chroma (better on JPEG outputs, identical on clean ones).
    """
    rgb = colormaps.check_rgb(rgb, "depth.decode")
    table = depth_table(colormaps.check_name(colormap), metric, *_check_params(lam, c))
    if rgb.size == 0:
        return np.zeros(rgb.shape[:-1], np.float32)
    img = colormaps.as_rows(rgb)
    out = np.empty(img.shape[:2], np.float32)
    for rows in colormaps.row_blocks(*out.shape):
        # mode="clip" lets take write straight into `out` (keys are always < 2**24).
        np.take(table, colormaps.rgb_keys(img[rows]), out=out[rows], mode="clip")
    return out.reshape(rgb.shape[:-1])


def decode_jax(rgb, colormap: str = "rainbow", lam: float = LAMBDA, c: float = C,
               metric: str = "rgb", positions=None):
    """jax.numpy twin of `decode` (jittable; equal to it bit for bit on CPU).

    The default rainbow/rgb path computes the nearest level arithmetically
    (`colormaps.rainbow_levels`, int32), so no 64 MB table goes to the device. Other
    colormaps/metrics gather from the uint16 position table: pass it as `positions`
    (`jnp.asarray(colormaps.nearest_table(colormap, metric))`, a jit argument) to keep it out
    of the compiled program; by default it is closed over as a constant.
    """
    import jax.numpy as jnp

    lam, c = _check_params(lam, c)
    colormaps.check_name(colormap)
    rgb = jnp.asarray(rgb)
    if rgb.dtype != jnp.uint8 or rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise TypeError(f"depth.decode_jax expects uint8 (..., 3), got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(jnp.int32)
    if colormap == "rainbow" and metric == "rgb":
        level = colormaps.rainbow_levels(x[..., 0], x[..., 1], x[..., 2], xp=jnp)
        step = colormaps.segment_resolution("rainbow") // 255
        lut = position_depths(colormap, lam, c)[::step]          # depth of each level
        return jnp.take(jnp.asarray(lut), level)
    if positions is None:
        positions = colormaps.nearest_table(colormap, metric)
    key = x[..., 0] | (x[..., 1] << 8) | (x[..., 2] << 16)
    q = jnp.take(jnp.asarray(positions), key).astype(jnp.int32)
    return jnp.take(jnp.asarray(position_depths(colormap, lam, c)), q)


@functools.lru_cache(maxsize=8)
def position_depths(colormap: str, lam: float = LAMBDA, c: float = C) -> np.ndarray:
    """float32 (resolution + 1,): depth in metres of every table position of the path."""
    q = np.arange(colormaps.resolution(colormap) + 1)
    lut = inverse_transform(q / colormaps.resolution(colormap), lam, c).astype(np.float32)
    lut.flags.writeable = False
    return lut


@functools.lru_cache(maxsize=4)
def depth_table(colormap: str = "rainbow", metric: str = "rgb", lam: float = LAMBDA,
                c: float = C) -> np.ndarray:
    """float32 (256**3,): decoded depth of every colour by `colormaps.rgb_keys` key (64 MB)."""
    lut, positions = position_depths(colormap, lam, c), colormaps.nearest_table(colormap, metric)
    table = np.empty(positions.shape, np.float32)
    for i in range(0, len(table), 1 << 20):      # chunks: no 128 MB intp copy of the index
        np.take(lut, positions[i:i + (1 << 20)], out=table[i:i + (1 << 20)], mode="clip")
    table.flags.writeable = False
    return table


# Prompts ------------------------------------------------------------------------------------

_TASKS = (
    "Generate a metric depth map of the input image",
    "Predict the metric depth of this scene as an image",
    "Estimate the per-pixel metric depth of this photo",
    "Produce a depth map of the given image, in metres",
    "Render how far every pixel is from the camera as a metric depth map",
)
_RAINBOW_PHRASES = (
    ". Visualized in the rainbow (black-red-yellow-green-cyan-blue-violet-white) palette.",
    ", visualized in the rainbow (black-red-yellow-green-cyan-blue-violet-white) color palette.",
    ". Visualized in the rainbow colormap.",
    ".",
)
_MAP_PHRASES = (
    ", using the {name} colormap.",
    ". Visualize it with the {name} color map.",
    ", rendered in {name} colors.",
)
_GRAY_PHRASES = (", in grayscale.", ", using the gray colormap.", ". Visualize it in gray levels.")


def render_prompt(rng: np.random.Generator, colormap: str = "rainbow") -> str:
    """An instruction asking for a depth map in `colormap`, in a random phrasing."""
    colormaps.check_name(colormap)
    task = _TASKS[rng.integers(len(_TASKS))]
    if colormap == "rainbow":
        tail = _RAINBOW_PHRASES[rng.integers(len(_RAINBOW_PHRASES))]
    elif colormap == "gray":
        tail = _GRAY_PHRASES[rng.integers(len(_GRAY_PHRASES))]
    else:
        tail = _MAP_PHRASES[rng.integers(len(_MAP_PHRASES))].format(name=colormap)
    return task + tail


_GRAY = re.compile(r"\b(gr[ae]y|gr[ae]yscale|gr[ae]y[- ]levels?)\b")


def parse_prompt(prompt: str) -> dict:
    """{"colormap": name} stated by a depth prompt; rainbow when none is named."""
    text = prompt.lower()
    for name in ("plasma", "inferno", "viridis"):
        if re.search(rf"\b{name}\b", text):
            return {"colormap": name}
    if _GRAY.search(text):
        return {"colormap": "gray"}
    return {"colormap": "rainbow"}
