"""Semantic segmentation codec: class index maps <-> images painted in prompt-stated colors.

The prompt states a color per class (random assignments in training, so the model learns to
follow the prompt). Pixels of no named class are painted in the background color, black unless
the prompt states another one (the real model paints unnamed classes black). Decoding assigns
each pixel the nearest stated color, and rejects it (-1) beyond `max_distance` (Euclidean, in
0..255 RGB units) or when the nearest color is the background.

    colors = semantic.palette(19)                     # (19, 3) uint8, far apart and from black
    rgb = semantic.encode(labels, colors)             # int (H, W), -1 = background
    labels = semantic.decode(rgb, colors)             # int32 (H, W), -1 = background / unmatched
    prompt = semantic.render_prompt(rng, classes=names, colors=colors)
    spec = semantic.parse_prompt(prompt)              # {"classes", "colors", "background"}

`decode` is a gather through a cached 256^3 table (`tasks.nearest.nearest_color`, also what
the referring and instance decoders use); `decode_jax` is the jittable equivalent (equal
results, ties to the lower index in both). The nearest-color names (`nearest_color`,
`nearest_color_jax`, `fill_uncertain`, `as_image`, `CONFIDENT_DISTANCE`) stay importable from
here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from tasks import colors as colorlib
from tasks import prompts

# Used by `decode` and re-exported: `semantic.nearest_color` etc. predate `tasks.nearest`.
from tasks.nearest import CONFIDENT_DISTANCE, as_image, fill_uncertain, nearest_color, nearest_color_jax  # noqa: F401

NAME = "semantic"
# Stated colors drift ~20 levels in real outputs; compressed edges drift more. Between palette
# colors the nearest wins anyway; the limit only rejects colors far from every stated one.
DEFAULT_MAX_DISTANCE = 96.0
BLACK = (0, 0, 0)
# Statement subjects that name the background rather than a class (compared lower-case).
BACKGROUND_NAMES = frozenset({"background", "everything else", "rest", "all other pixels",
                              "other pixels", "background color"})


# ---------------------------------------------------------------------------------------------
# Palette


def palette(k: int, exclude: Sequence[Sequence[int]] = (BLACK,)) -> np.ndarray:
    """`k` colors as uint8 (k, 3), maximizing the smallest Euclidean RGB distance between any
    two of them and between them and each `exclude` color (black by default, the color of
    unnamed classes; pass `((0, 0, 0), (255, 255, 255))` to keep white out too).

    Deterministic and cached. Farthest-point sampling over a 21^3 grid gives one start, seeded
    uniform draws a few more (for small k); each is refined by projected descent on the
    energy sum (d_min / d_ij)^p with p rising from 8 to 64 (a smooth stand-in for the minimum
    distance), and the best rounded configuration wins (k > 256: farthest points only).
    Sorted lexicographically.
    For k = 19 the minimum distance is 136 (the official Cityscapes palette, with black: 20).
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"palette size must be a positive integer, got {k!r}")
    fixed = tuple(tuple(int(c) for c in colorlib.as_rgb(e)) for e in exclude)
    if k > 4096:
        raise ValueError(f"palette size {k} too large: at most 4096 well-separated colors")
    return _palette(int(k), fixed).copy()


def min_distance(colors: np.ndarray, exclude: Sequence[Sequence[int]] = ()) -> float:
    """Smallest Euclidean distance between two rows of `colors` (k, 3), or a row and `exclude`."""
    c = np.asarray(colors, np.float64).reshape(-1, 3)
    a = np.vstack([c, np.asarray(exclude, np.float64).reshape(-1, 3)])
    d = np.sqrt(((c[:, None] - a[None]) ** 2).sum(-1))
    d[np.arange(len(c)), np.arange(len(c))] = np.inf
    return float(d.min())


_REFINE_UP_TO = 256  # larger palettes keep the farthest-point result (refining is O(k^2))


@functools.lru_cache(maxsize=256)
def _palette(k: int, fixed: tuple) -> np.ndarray:
    fix = np.asarray(fixed, np.float64).reshape(-1, 3)
    best = _farthest_points(k, fix)
    if 2 <= k + len(fix) and k <= _REFINE_UP_TO:
        starts = max(1, min(24, 8192 // (k * k)))
        iters = int(np.clip(3e6 / (starts * k * k), 200, 1000))
        init = np.random.default_rng(k).uniform(0, 255, (starts, k, 3))
        init[0] = best
        best = _refine(init, fix, iters)
    return best[np.lexsort(best.T[::-1])].astype(np.uint8)


def _farthest_points(k: int, fix: np.ndarray) -> np.ndarray:
    g = np.linspace(0, 255, 21)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    if k > len(grid) // 2:  # a finer grid for large palettes
        g = np.linspace(0, 255, int(np.ceil((8 * k) ** (1 / 3))) + 1)
        grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    d2 = np.full(len(grid), np.inf)
    for f in fix:
        d2 = np.minimum(d2, ((grid - f) ** 2).sum(1))
    if not len(fix):
        d2 = ((grid - 127.5) ** 2).sum(1)  # start from a corner
    points = np.empty((k, 3))
    for i in range(k):
        j = int(np.argmax(d2))
        points[i] = grid[j]
        d2 = np.minimum(d2, ((grid - grid[j]) ** 2).sum(1))
    return points


def _pair_d2(p: np.ndarray, fix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances (S, k, k + f) from each point to the others and the fixed colors."""
    s, k, _ = p.shape
    others = np.concatenate([p, np.broadcast_to(fix, (s,) + fix.shape)], 1)
    diff = p[:, :, None, :] - others[:, None, :, :]
    d2 = (diff ** 2).sum(-1)
    d2[:, np.arange(k), np.arange(k)] = np.inf
    return diff, d2


def _refine(p: np.ndarray, fix: np.ndarray, iters: int) -> np.ndarray:
    best = np.round(p)
    best_d = _pair_d2(best, fix)[1].min((1, 2))
    for it in range(iters):
        power = 8.0 * 8.0 ** (it / iters)
        diff, d2 = _pair_d2(p, fix)
        w = (d2.min((1, 2), keepdims=True) / d2) ** (power / 2 + 1)
        grad = -(w[..., None] * diff).sum(2)
        norm = np.linalg.norm(grad, axis=2).max(1)[:, None, None] + 1e-12
        step = 10.0 * (1 - it / iters) + 0.25  # RGB units per iteration for the fastest point
        p = np.clip(p - step * grad / norm, 0, 255)
        if it % 10 == 0 or it == iters - 1:
            cand = np.round(p)
            d = _pair_d2(cand, fix)[1].min((1, 2))
            better = d > best_d
            best[better], best_d[better] = cand[better], d[better]
    return best[int(np.argmax(best_d))]


# ---------------------------------------------------------------------------------------------
# Codec


def as_colors(colors) -> np.ndarray:
    """`colors` as uint8 (k, 3) (k may be 0); ValueError unless integers in 0..255."""
    c = np.asarray(colors)
    if c.size == 0:
        return np.zeros((0, 3), np.uint8)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"colors must be a (k, 3) array of RGB, got shape {c.shape}")
    if np.any((c < 0) | (c > 255)) or not np.all(np.equal(np.mod(c, 1), 0)):
        raise ValueError(f"colors must hold integers in 0..255, got {c.tolist()}")
    return c.astype(np.uint8)


def encode(labels: np.ndarray, colors, background: Sequence[int] = BLACK,
           classes: Sequence[str] | None = None) -> np.ndarray:
    """int (H, W) class indices into `colors` (k, 3), -1 = background -> uint8 (H, W, 3).

    `classes` is accepted (and unused) so that a parsed prompt spec can be passed as is.
    """
    del classes
    c = as_colors(colors)
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer (H, W) array, got {lab.dtype} {lab.shape}")
    if lab.size and (lab.min() < -1 or lab.max() >= len(c)):
        bad = lab.min() if lab.min() < -1 else lab.max()
        raise ValueError(f"label {int(bad)} out of range: expected -1 (background) or "
                         f"0..{len(c) - 1} for {len(c)} colors")
    lut = np.vstack([c, np.asarray(colorlib.as_rgb(background), np.uint8)])
    return lut[lab]  # -1 indexes the background row


def decode(rgb: np.ndarray, colors, max_distance: float | None = DEFAULT_MAX_DISTANCE,
           background: Sequence[int] | None = BLACK, fill_radius: float = 0,
           **spec_extras) -> np.ndarray:
    """uint8 (H, W, 3) -> int32 (H, W): index of the nearest color in `colors` (k, 3); -1 where
    the nearest is `background` (None: no background color) or farther than `max_distance`
    (None: no limit). Ties go to the lower index, classes before the background.

    fill_radius > 0 (pixels) repairs edges of compressed images: a pixel farther than
    `CONFIDENT_DISTANCE` from every stated color (JPEG chroma smear, anti-aliasing) takes the
    decode of the nearest confident pixel within `fill_radius`. With fill_radius = 0 (default)
    the decode is per pixel and equals `decode_jax`. Other keys of a spec dict (`classes`,
    builder bookkeeping) are accepted and ignored, so `decode(rgb, **spec)` works.
    """
    del spec_extras
    c = as_colors(colors)
    bg = None if background is None else colorlib.as_rgb(background)
    labels = nearest_color(rgb, c, max_distance, bg)
    if fill_radius > 0 and labels.size:
        labels = fill_uncertain(as_image(rgb), c, bg, labels, fill_radius)
    return labels


def decode_jax(rgb, colors, max_distance: float | None = DEFAULT_MAX_DISTANCE,
               background: Sequence[int] | None = BLACK):
    """`decode` in jax.numpy: jittable (`max_distance` and `background` static), same result."""
    bg = None if background is None else colorlib.as_rgb(background)
    return nearest_color_jax(rgb, colors, max_distance, bg)


# ---------------------------------------------------------------------------------------------
# Prompts

_LEAD_INS = (
    "Generate a semantic segmentation visualization of the input image",
    "Generate a semantic segmentation map of this image",
    "Produce a per-pixel class labeling of the input",
    "Conduct per-class semantic segmentation for the given image",
    "Segment the image semantically",
    "Create a semantic segmentation of the picture",
)
_JSON_LINKS = (", using this color mapping: ", " with the color mapping ", ". Color mapping: ",
               ", with colors ")


def render_prompt(rng: np.random.Generator, classes: Sequence[str], colors,
                  background: Sequence[int] = BLACK, state_background: bool | None = None,
                  **layout) -> str:
    """An instruction asking to paint `classes` in `colors` (k, 3) over `background`.

    A non-black background is always stated; black is stated at random (`state_background`
    None) since the model paints unnamed classes black anyway. `layout` may hold `layout=` /
    `style=` of `colors.render_mapping`.
    """
    return render_statements(rng, _LEAD_INS, classes, colors, background, state_background,
                             **layout)


def render_statements(rng: np.random.Generator, lead_ins: Sequence[str], names: Sequence[str],
                      colors, background: Sequence[int] = BLACK,
                      state_background: bool | None = None, **layout) -> str:
    """A lead-in then `names` -> `colors` statements (shared with the referring codec)."""
    c = as_colors(colors)
    names = list(names)
    if len(names) != len(c) or len(set(names)) != len(names):
        raise ValueError(f"need one distinct name per color: {len(names)} names, "
                         f"{len(c)} colors")
    reserved = [n for n in names if n.strip().lower() in BACKGROUND_NAMES]
    if reserved:
        raise ValueError(f"names {reserved} are reserved for the background")
    bg = colorlib.as_rgb(background)
    mapping = {n: tuple(int(v) for v in rgb) for n, rgb in zip(names, c)}
    if state_background or (state_background is None and (bg != BLACK or rng.random() < 0.5)):
        mapping["background"] = bg
    elif bg != BLACK:
        raise ValueError(f"a non-black background {bg} must be stated in the prompt")
    return compose(rng, lead_ins, mapping, **layout)


def compose(rng: np.random.Generator, lead_ins: Sequence[str], mapping: dict,
            **layout) -> str:
    """A lead-in sentence followed by the mapping (JSON after a link phrase, or statements)."""
    layout.setdefault("layout", prompts.choice(rng, colorlib.LAYOUTS))
    text = colorlib.render_mapping(mapping, rng, **layout)
    lead = prompts.choice(rng, lead_ins)
    if layout["layout"] == "json":
        return lead + prompts.choice(rng, _JSON_LINKS) + text
    return prompts.sentence(lead) + " " + text


def parse_prompt(prompt: str) -> dict:
    """{"classes": [str], "colors": uint8 (k, 3), "background": (r, g, b)} stated by `prompt`.

    The background is black when the prompt states none (what the model paints then).
    """
    mapping = colorlib.parse_mapping(prompt)
    background = BLACK
    classes, cols = [], []
    for name, rgb in mapping.items():
        if name.strip().lower() in BACKGROUND_NAMES:
            background = rgb
        else:
            classes.append(name)
            cols.append(rgb)
    return {"classes": classes, "colors": np.asarray(cols, np.uint8).reshape(-1, 3),
            "background": background}

