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

`decode` is a gather through a cached 256^3 table (see `nearest_color`); `decode_jax` is the
jittable equivalent (equal results, ties to the lower index in both). `nearest_color` is also
what the referring and instance decoders use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from tasks import colors as colorlib
from tasks import prompts

NAME = "semantic"
# Stated colors drift ~20 levels in real outputs; compressed edges drift more. Between palette
# colors the nearest wins anyway; the limit only rejects colors far from every stated one.
DEFAULT_MAX_DISTANCE = 96.0
# Pixels within this distance of a stated color are trusted by the edge fill (`fill_radius`).
CONFIDENT_DISTANCE = 24.0
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
# Nearest-color lookup (shared by the semantic, referring and instance decoders)

_UNRESOLVED = -2
_EXACT_BELOW = 1 << 18  # smaller images: exact distances, no table to build
_CELL = 8  # side (RGB levels) of the smallest cells certified when a table is built
_NO_LIMIT = 3 * 255 ** 2 + 1


def as_image(rgb) -> np.ndarray:
    """`rgb` as a C-contiguous uint8 (H, W, 3) array; ValueError for another dtype or shape."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def _limit(max_distance: float | None) -> int:
    """max_distance -> the largest squared distance accepted (integer, so comparisons are exact)."""
    if max_distance is None:
        return _NO_LIMIT
    if not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0 or None, got {max_distance!r}")
    return int(min(np.floor(float(max_distance) ** 2), _NO_LIMIT))


def _references(colors: np.ndarray, background) -> np.ndarray:
    refs = np.asarray(colors, np.int64).reshape(-1, 3)
    if background is not None:
        refs = np.vstack([refs, np.asarray(background, np.int64).reshape(1, 3)])
    if len(refs) > 32000:
        raise ValueError(f"at most 32000 colors can be decoded, got {len(refs)}")
    return refs


def nearest_color(rgb: np.ndarray, colors: np.ndarray, max_distance: float | None = None,
                  background=None) -> np.ndarray:
    """int32 (H, W): index of the nearest row of `colors` (k, 3) for each pixel of uint8
    (H, W, 3) `rgb`; -1 where the nearest reference is `background` (an RGB triple, or None)
    or its distance exceeds `max_distance`. Ties go to the lower index (background last).

    Large images go through a cached 256^3 int8 table (int16 beyond 127 colors) indexed by
    the packed 24-bit pixel: coarse 8^3-level cells that provably share one answer (bounds at
    the cell corners) are filled at build time, and the remaining entries are computed
    exactly the first time a pixel needs them. Small images are decoded with exact distances
    directly (no table to build).
    """
    img = as_image(rgb)
    h, w = img.shape[:2]
    refs = _references(colors, background)
    k = len(refs) - (background is not None)
    limit = _limit(max_distance)
    if len(refs) == 0:
        return np.full((h, w), -1, np.int32)
    if h * w < _EXACT_BELOW:
        return _exact(img.reshape(-1, 3), refs, k, limit).astype(np.int32).reshape(h, w)
    table = _table(refs.tobytes(), k, limit)
    idx = _packed(img)
    lab = np.take(table, idx)
    missing = np.flatnonzero(lab == _UNRESOLVED)
    if missing.size:
        values = np.unique(idx[missing])
        table[values] = _exact(_unpacked(values), refs, k, limit)
        lab[missing] = table[idx[missing]]
    return lab.astype(np.int32).reshape(h, w)


def _packed(img: np.ndarray) -> np.ndarray:
    """uint32 (H*W,) r | g << 8 | b << 16 per pixel, read as overlapping little-endian words."""
    flat = img.reshape(-1)
    n = flat.size // 3
    out = np.empty(n, np.uint32)
    # Word i starts at byte 3i and holds (r_i, g_i, b_i, r_{i+1}); the last pixel would read
    # past the buffer, so it is packed on its own.
    words = np.ndarray((n - 1,), "<u4", buffer=flat.data, strides=(3,))
    np.bitwise_and(words, 0xFFFFFF, out=out[:-1])
    last = flat[-3:].astype(np.uint32)
    out[-1] = last[0] | last[1] << 8 | last[2] << 16
    return out


def _unpacked(values: np.ndarray) -> np.ndarray:
    return np.stack([values & 255, (values >> 8) & 255, values >> 16], 1).astype(np.uint8)


def _exact(x: np.ndarray, refs: np.ndarray, k: int, limit: int) -> np.ndarray:
    """int16 (M,) decode of uint8 pixels (M, 3) by exact squared distances."""
    r = refs.astype(np.float64)
    rr = (r ** 2).sum(1)
    out = np.empty(len(x), np.int16)
    for s in range(0, len(x), 1 << 16):
        xs = x[s:s + (1 << 16)].astype(np.float64)
        # Integers below 2^53 throughout: the float64 distances are exact, so are the ties.
        d2 = (xs ** 2).sum(1)[:, None] + rr[None] - 2.0 * (xs @ r.T)
        i = np.argmin(d2, 1)
        far = d2[np.arange(len(i)), i] > limit
        out[s:s + len(i)] = np.where((i >= k) | far, -1, i)
    return out


@functools.lru_cache(maxsize=4)  # 16 MiB each (32 MiB beyond 127 colors)
def _table(refs_bytes: bytes, k: int, limit: int) -> np.ndarray:
    refs = np.frombuffer(refs_bytes, np.int64).reshape(-1, 3)
    coarse = _certified_cells(refs, k, limit)  # indexed [b, g, r] cell
    # int8 entries when they fit: half the memory traffic of the gather, the decode's cost.
    coarse = coarse.astype(np.int8 if len(refs) <= 127 else np.int16)
    # Expand every cell to its _CELL^3 levels; [b, g, r] order matches the packed index.
    full = np.repeat(np.repeat(np.repeat(coarse, _CELL, 2), _CELL, 1), _CELL, 0)
    return full.reshape(-1)


def _certified_cells(refs: np.ndarray, k: int, limit: int) -> np.ndarray:
    """int16 (32, 32, 32) [b, g, r]: the decode shared by every pixel of each 8^3-level cell,
    or _UNRESOLVED. Octree refinement: cells of 32 levels, then the halves of the undecided
    ones, down to 8 levels, so only cells near a decision boundary are visited at fine sizes.
    Finer cells would resolve more entries up front but cost more to build than the lazy
    exact fill they save on typical images.
    """
    n = 256 // _CELL
    out = np.full((n, n, n), _UNRESOLVED, np.int16)
    size = 32
    axis = np.arange(0, 256, size)
    lo = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    halves = np.stack(np.meshgrid(*[[0, 1]] * 3, indexing="ij"), -1).reshape(-1, 3)
    while len(lo):
        value = np.concatenate([_certify(lo[s:s + 8192], size, refs, k, limit)
                                for s in range(0, len(lo), 8192)])
        done = value != _UNRESOLVED
        m = size // _CELL
        block = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
        cells = (lo[done] // _CELL)[:, None, :] + block[None]  # (cells, m^3, rgb)
        out[cells[..., 2], cells[..., 1], cells[..., 0]] = value[done][:, None]
        if size == _CELL:
            break
        size //= 2
        lo = (lo[~done][:, None, :] + size * halves[None]).reshape(-1, 3)
    return out


def _certify(lo: np.ndarray, size: int, refs: np.ndarray, k: int, limit: int) -> np.ndarray:
    """int16 (M,): the decode shared by all pixels of the cells lo..lo+size-1, or _UNRESOLVED.

    The cell belongs to reference i if for every j the linear function |x-c_i|^2 - |x-c_j|^2
    stays < 0 (j < i) or <= 0 (j > i) at its worst corner and, for a class, the farthest
    corner lies within the limit. It is -1 if i is the background, or if even the cell's
    nearest point is beyond the limit for every reference.
    """
    hi = lo + size - 1
    center = lo + (size - 1) / 2
    i = np.argmin(((center[:, None, :] - refs[None]) ** 2).sum(-1), 1)
    ci = refs[i]
    a = 2 * (refs[None, :, :] - ci[:, None, :])  # gradient of the linear function, (M, n, 3)
    sq = (refs ** 2).sum(1)
    worst = np.maximum(a * lo[:, None], a * hi[:, None]).sum(-1) + sq[i][:, None] - sq[None]
    order = np.arange(len(refs))
    wins = np.all(np.where(order[None] < i[:, None], worst < 0, worst <= 0), 1)
    far = np.maximum((lo - ci) ** 2, (hi - ci) ** 2).sum(1)
    gap = np.maximum(lo[:, None] - refs[None], 0) + np.maximum(refs[None] - hi[:, None], 0)
    near = (gap ** 2).sum(-1).min(1)
    value = np.full(len(lo), _UNRESOLVED, np.int16)
    matched = wins & (i < k) & (far <= limit)
    value[matched] = i[matched]
    value[(wins & (i >= k)) | (near > limit)] = -1
    return value


def nearest_color_jax(rgb, colors, max_distance: float | None = None, background=None):
    """`nearest_color` in jax.numpy: int32 (H, W), jittable, equal to the numpy result.

    `colors` may be traced; `max_distance` and `background` must be static (Python values).
    Builds an (H, W, k) distance array: fine on accelerators, for CPU use `nearest_color`.
    """
    import jax.numpy as jnp  # jax is only needed on this path

    refs = jnp.asarray(colors, jnp.int32).reshape(-1, 3)
    k = refs.shape[0]
    if background is not None:
        refs = jnp.concatenate([refs, jnp.asarray(background, jnp.int32).reshape(1, 3)])
    x = jnp.asarray(rgb).astype(jnp.int32)
    if refs.shape[0] == 0:
        return jnp.full(x.shape[:-1], -1, jnp.int32)
    d2 = jnp.sum((x[..., None, :] - refs) ** 2, axis=-1)
    i = jnp.argmin(d2, axis=-1)
    far = jnp.min(d2, axis=-1) > _limit(max_distance)
    return jnp.where((i >= k) | far, -1, i).astype(jnp.int32)


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


def fill_uncertain(img: np.ndarray, c: np.ndarray, bg, labels: np.ndarray,
                   radius: float) -> np.ndarray:
    """int32 (H, W) `labels` with the unconfident pixels of uint8 (H, W, 3) `img` (farther than
    `CONFIDENT_DISTANCE` from every color of `c` (k, 3) and from `bg`) set to the decode of the
    nearest confident pixel within `radius` px (Euclidean; background -> -1). Unconfident
    pixels with no confident pixel that close keep their label. See `decode(fill_radius=)`."""
    refs = c if bg is None else np.vstack([c, np.asarray(bg, np.uint8)[None]])
    sure = nearest_color(img, refs, CONFIDENT_DISTANCE)  # len(c) marks the background
    unsure = (sure < 0).astype(np.uint8)
    if not unsure.any() or unsure.all():
        return labels
    dist, nearest = cv2.distanceTransformWithLabels(unsure, cv2.DIST_L2, 5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
    # Each confident pixel has its own label id: map the ids to that pixel's decode.
    seeds = np.flatnonzero(unsure.ravel() == 0)
    decode_of = np.full(int(nearest.max()) + 1, -1, np.int32)
    decode_of[nearest.ravel()[seeds]] = np.where(sure.ravel()[seeds] < len(c),
                                                 sure.ravel()[seeds], -1)
    fill = (unsure > 0) & (dist <= radius)
    out = labels.copy()
    out[fill] = decode_of[nearest[fill]]
    return out


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

