"""Nearest stated color under a distance limit: RGB images -> indices into a color set.

The decoders of the color-mapped tasks (semantic, referring, instance) all ask the same
question of every pixel: which of the k colors stated in the prompt (plus, optionally, a
background color) is nearest, and is it near enough to trust?

    idx = nearest_color(rgb, colors, max_distance=96.0, background=(0, 0, 0))
    # int32 (H, W): 0..k-1, or -1 where the background is nearest or every color is too far
    idx = nearest_color_jax(rgb, colors, 96.0, (0, 0, 0))    # jittable, same result
    idx = fill_uncertain(rgb, colors, (0, 0, 0), idx, radius=3)   # repair smeared edges

Distances are Euclidean in 0..255 RGB units; ties go to the lower index, colors before the
background. Large images are decoded through a cached 256^3 lookup table built per color set
(coarse cells certified at build time, the rest filled exactly on first use); small ones by
exact distances directly.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Pixels within this distance of a stated color are trusted by the edge fill (`fill_uncertain`).
CONFIDENT_DISTANCE = 24.0

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


def fill_uncertain(img: np.ndarray, c: np.ndarray, bg, labels: np.ndarray,
                   radius: float) -> np.ndarray:
    """int32 (H, W) `labels` with the unconfident pixels of uint8 (H, W, 3) `img` (farther than
    `CONFIDENT_DISTANCE` from every color of `c` (k, 3) and from `bg`) set to the decode of the
    nearest confident pixel within `radius` px (Euclidean; background -> -1). Unconfident
    pixels with no confident pixel that close keep their label. Used by
    `semantic.decode(fill_radius=)` and the instance decoder."""
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
