"""Instance segmentation codec: one class per prompt, every instance painted in its own color.

The prompt names the category and (optionally) the background color; the model picks the
instance colors, so decoding clusters pixel colors. Real outputs show colors a few levels off,
anti-aliased edges and JPEG noise: edge pixels form thin bands of mixed colors, which must not
become instances.

    rgb = instance.encode(masks)                       # bool (N, H, W) -> uint8 (H, W, 3)
    out = instance.decode(rgb, background=(0, 0, 0))   # Instances(masks, scores, colors)
    rles = instance.to_rle(out.masks)                  # COCO RLE for pycocotools

Decoding, for an image of H x W pixels:
1. histogram the colors over 4^3-level cells; seeds are local maxima of the 3^3-cell box sum
   holding at least `min_area` pixels and 3x denser than their 7^3-cell surroundings (a flat
   spread of colors, noise or a gradient, is no color); each seed moves to the mean color of
   the pixels within `seed_radius` (mean shift); seeds closer than `merge_distance` merge (the
   larger wins), and so do seeds within twice that distance holding under 5% of the larger
   one's pixels (JPEG splits such satellite peaks off large flat regions);
2. pixels take the nearest seed color within `max_distance` (through `nearest.nearest_color`);
   the stated background is one of the references and yields no instance; pixels far from
   every color (mixed edges) take the label of the nearest confidently colored pixel within
   `fill_radius`, as `semantic.decode(..., fill_radius=...)` does;
3. within each cluster, connected components without a single interior pixel (all 4
   neighbours in the cluster) are anti-aliased bands and dropped, unless all their pixels
   have exactly the cluster's color (thin parts of a clean encoding); clusters left below
   `min_area` pixels, without any interior pixel, or (unless exactly colored) with fewer than
   half of their pixels interior (bands of compression ringing along edges) are dropped.
Each mask's score in [0, 1] is the product of: its interior fraction, color compactness
exp(-(rms color deviation / 24)^2) (over the pixels of its own color, not the filled edges),
size area / (area + 4 min_area), and separation from the background min(1, distance / 64).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from tasks import colors as colorlib
from tasks import nearest, prompts, semantic

NAME = "instance"
BLACK = (0, 0, 0)
_BINS = 64  # histogram cells per channel (4 levels each)
_MAX_SEEDS = 512  # densest histogram peaks examined
_SATELLITE = 0.05  # mass ratio under which a nearby peak is a satellite of a larger one
_MIN_SOLIDITY = 0.5  # interior fraction a (not exactly colored) instance needs


class Instances(NamedTuple):
    """Decoded instances: bool masks (N, H, W), float32 scores (N,), uint8 colors (N, 3)."""

    masks: np.ndarray
    scores: np.ndarray
    colors: np.ndarray


def encode(masks: np.ndarray, colors=None, background: Sequence[int] = BLACK,
           target: str | None = None) -> np.ndarray:
    """bool (N, H, W) instance masks -> uint8 (H, W, 3).

    colors: (N, 3) uint8; default `semantic.palette(N, exclude=(background,))`, far from each
    other and from the background. Overlaps: larger masks are painted first, so smaller
    instances stay visible. `target` (the category) is accepted and unused.
    """
    del target
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    m = m.astype(bool)
    bg = colorlib.as_rgb(background)
    out = np.empty(m.shape[1:] + (3,), np.uint8)
    out[:] = bg
    if not len(m):
        return out
    c = semantic.palette(len(m), exclude=(bg,)) if colors is None else semantic.as_colors(colors)
    if len(c) != len(m):
        raise ValueError(f"{len(m)} masks but {len(c)} colors")
    for i in np.argsort(-m.sum((1, 2)), kind="stable"):
        out[m[i]] = c[i]
    return out


def decode(rgb: np.ndarray, background: Sequence[int] | None = BLACK,
           min_area: int | None = None, max_distance: float = 40.0,
           merge_distance: float = 20.0, seed_radius: float = 12.0, fill_radius: float = 3,
           min_score: float = 0.05, **spec_extras) -> Instances:
    """Cluster the colors of uint8 (H, W, 3) `rgb` into instance masks (see module docstring).

    background: the stated background color; None takes the most frequent color cluster.
    min_area: pixels an instance needs (default max(16, 1e-4 H W)); instances scoring below
    `min_score` are dropped too. fill_radius: pixels farther than `nearest.CONFIDENT_DISTANCE`
    from every cluster color (mixed edge colors) take the cluster of the nearest confident
    pixel within this many pixels (0: off). Masks come sorted by decreasing score, ties by
    decreasing area, then by position (first pixel in raster order), so tied scores rank the
    same whatever the clustering order. Other spec
    keys (`target`, builder bookkeeping) are ignored. Never raises on image content.
    """
    del spec_extras
    img = nearest.as_image(rgb)
    h, w = img.shape[:2]
    if min_area is None:
        min_area = max(16, int(1e-4 * h * w))
    empty = Instances(np.zeros((0, h, w), bool), np.zeros(0, np.float32),
                      np.zeros((0, 3), np.uint8))
    if h * w == 0:
        return empty
    centers, mass = _seeds(img, min_area, seed_radius, merge_distance)
    bg = None if background is None else np.asarray(colorlib.as_rgb(background), np.float64)
    if bg is None and len(centers):
        bg = centers[int(np.argmax(mass))]
    if bg is not None and len(centers):
        centers = centers[np.linalg.norm(centers - bg, axis=1) >= merge_distance]
    if not len(centers):
        return empty
    refs = np.round(centers).astype(np.uint8)
    bg_ref = None if bg is None else tuple(int(v) for v in np.round(bg))
    colored = nearest.nearest_color(img, refs, max_distance, bg_ref)
    labels = colored
    if fill_radius > 0:
        labels = nearest.fill_uncertain(img, refs, bg_ref, colored, fill_radius)
    interior = _interior(labels)
    exact = np.all(img == refs[np.maximum(labels, 0)], axis=-1)
    masks, scores, cols = [], [], []
    for i, center in enumerate(centers):
        found = _clean_mask(labels == i, interior, exact)
        if found is None or found[0].sum() < min_area:
            continue
        mask, inner = found
        if inner < _MIN_SOLIDITY * mask.sum() and not exact[mask].all():
            continue  # mostly edge: a band of mixed colors (compression ringing, blur)
        # Color statistics over the pixels of the cluster's own color (not the filled edges).
        own = img[mask & (colored == i)].astype(np.float64)
        spread = np.sqrt(((own - center) ** 2).sum(1).mean()) if len(own) else max_distance
        score = _score(int(mask.sum()), inner, spread, center, bg, min_area)
        if score >= min_score:
            masks.append(mask)
            scores.append(score)
            cols.append(refs[i])
    if not masks:
        return empty
    # Deterministic order (COCO AP ranks tied scores by list order): score, then area (both
    # decreasing), then position (the first pixel in raster order).
    stack = np.stack(masks)
    first = stack.reshape(len(stack), -1).argmax(1)
    order = np.lexsort((first, -stack.sum((1, 2)), -np.asarray(scores, np.float32)))
    return Instances(stack[order], np.asarray(scores, np.float32)[order],
                     np.stack(cols)[order])


def _score(area: int, inner: int, spread: float, center: np.ndarray, bg, min_area: int):
    """Confidence in [0, 1]: interior fraction x color compactness x size x separation."""
    separation = 1.0 if bg is None else min(1.0, float(np.linalg.norm(center - bg)) / 64)
    compact = np.exp(-(spread / 24) ** 2)
    return (inner / area) * compact * area / (area + 4 * min_area) * separation


def _seeds(img: np.ndarray, min_area: int, radius: float, merge: float):
    """Cluster centers (S, 3) float64 and their pixel counts, largest first."""
    q = img >> 2  # 4-level cells
    cell = (q[..., 0].astype(np.int32) * _BINS + q[..., 1]) * _BINS + q[..., 2]
    count = np.bincount(cell.ravel(), minlength=_BINS ** 3).astype(np.float64)
    sums = np.stack([np.bincount(cell.ravel(), img[..., c].ravel(), _BINS ** 3)
                     for c in range(3)], 1)
    hist = count.reshape((_BINS,) * 3)
    sums = sums.reshape((_BINS,) * 3 + (3,))
    box = ndimage.uniform_filter(hist, 3, mode="constant") * 27
    wide = ndimage.uniform_filter(hist, 7, mode="constant") * 343
    # A peak holds min_area pixels and is concentrated: its 3^3-cell box is 3x denser than the
    # surrounding 7^3 cells (a flat spread of colors, e.g. noise or a gradient, is no color).
    peaks = ((box == ndimage.maximum_filter(box, 3, mode="constant")) & (box >= min_area)
             & (box / 27 >= 3 * wide / 343))
    candidates = np.flatnonzero(peaks.ravel())
    candidates = candidates[np.argsort(-box.ravel()[candidates], kind="stable")][:_MAX_SEEDS]
    seeds = []
    for p in candidates:
        at = np.unravel_index(p, hist.shape)
        center = sums[at] / hist[at] if hist[at] else np.array(at) * 4 + 1.5
        for _ in range(4):  # mean shift over the cells around the center
            mass, center = _shift(hist, sums, center, radius)
        if mass >= min_area:
            seeds.append((mass, center))
    seeds.sort(key=lambda s: -s[0])
    kept: list[tuple[float, np.ndarray]] = []
    for mass, center in seeds:
        # Merge into a larger cluster when close, or when within twice the distance and tiny
        # next to it (a satellite peak that compression splits off a large flat region).
        if all((d := np.linalg.norm(center - c)) >= merge
               and (d >= 2 * merge or mass >= _SATELLITE * big) for big, c in kept):
            kept.append((mass, center))
    centers = np.array([c for _, c in kept]).reshape(-1, 3)
    return centers, np.array([m for m, _ in kept])


def _shift(hist: np.ndarray, sums: np.ndarray, center: np.ndarray, radius: float):
    """(pixels, mean color) of the cells whose mean color lies within `radius` of `center`."""
    lo = np.clip(np.floor((center - radius) / 4).astype(int), 0, _BINS - 1)
    hi = np.clip(np.floor((center + radius) / 4).astype(int), 0, _BINS - 1) + 1
    block = tuple(slice(a, b) for a, b in zip(lo, hi))
    n = hist[block].ravel()
    s = sums[block].reshape(-1, 3)
    occupied = n > 0
    means = s[occupied] / n[occupied, None]
    near = ((means - center) ** 2).sum(1) <= radius ** 2
    if not near.any():
        return 0.0, center
    mass = n[occupied][near].sum()
    return float(mass), s[occupied][near].sum(0) / mass


def _interior(labels: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixel and its 4 neighbours share one label (image borders count)."""
    same = np.ones(labels.shape, bool)
    same[1:] &= labels[1:] == labels[:-1]
    same[:-1] &= labels[:-1] == labels[1:]
    same[:, 1:] &= labels[:, 1:] == labels[:, :-1]
    same[:, :-1] &= labels[:, :-1] == labels[:, 1:]
    return same & (labels >= 0)


def _clean_mask(mask: np.ndarray, interior: np.ndarray, exact: np.ndarray):
    """The mask without anti-aliasing bands, and its interior pixel count (None if nothing
    is left). A connected component with no interior pixel is a band unless every one of its
    pixels has exactly the cluster's color (a thin part drawn on purpose, e.g. in a clean
    encoding); a cluster without any interior pixel is dropped whole.
    """
    rows = np.flatnonzero(mask.any(1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = mask[box]
    n, comp = cv2.connectedComponents(crop.astype(np.uint8), connectivity=8)
    inner = np.bincount(comp[interior[box] & crop], minlength=n)
    if not inner[1:].any():
        return None
    inexact = np.bincount(comp[crop & ~exact[box]], minlength=n)
    keep = (inner > 0) | (inexact == 0)
    keep[0] = False
    out = np.zeros_like(mask)
    out[box] = keep[comp]
    return out, int(inner.sum())


def to_rle(masks: np.ndarray) -> list[dict]:
    """bool (N, H, W) -> COCO RLEs ({"size": [H, W], "counts": str}, JSON-ready)."""
    m = np.asarray(masks, bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def from_rle(rles: Sequence[dict]) -> np.ndarray:
    """COCO RLEs (counts as str or bytes) -> bool (N, H, W)."""
    if not len(rles):
        raise ValueError("from_rle needs at least one RLE (the image size comes from them)")
    fixed = [dict(r, counts=r["counts"].encode("ascii") if isinstance(r["counts"], str)
                  else r["counts"]) for r in rles]
    return mask_utils.decode(fixed).transpose(2, 0, 1).astype(bool)


# ---------------------------------------------------------------------------------------------
# Prompts

_TEMPLATES = (
    "Generate an instance segmentation visualization of this image. Each {t} is colored "
    "differently.",
    "Segment every {t}, each in a different color.",
    "This image shows segmentation masks for the {t} from the input image. Each instance is "
    "represented by a different color.",
    "The {t} instances are each represented by a unique, solid color.",
    "Generate an instance segmentation of the input image. Each {t} is painted in its own "
    "color.",
)
_TARGET = [re.compile(p) for p in (
    r"\b(?:masks?|segmentation) (?:for|of) (?:all |every |each )?(?:the )?(?P<t>[^.;]+?) "
    r"(?:from|in) (?:the|this) (?:input|given|provided)",
    r"\b[Ss]egment (?:all |every |each )?(?:of )?(?:the )?(?P<t>[^,.;]+?)(?:,|\.|;|$| so | and "
    r"| with )",
    r"\b[Ee]ach (?:piece of |instance of |individual )?(?P<t>[^,.;]+?)(?: instance)? (?:is|are) "
    r"(?:colou?red|painted|shown|represented|rendered|drawn|given|assigned|filled)",
    r"(?P<t>[^.;:]+?) instances (?:are|is)\b",
)]
_GRAMMAR_WORDS = frozenset({"from", "in", "instance", "instances", "each", "every", "all",
                            "piece", "of", "segment", "mask", "masks", "and", "so", "with"})


def _write_target(target: str) -> str:
    """The category as written in a template: bare when the patterns cannot mis-split it."""
    if prompts.is_plain_name(target) and not set(target.lower().split()) & _GRAMMAR_WORDS:
        return target
    return json.dumps(target, ensure_ascii=False)


def render_prompt(rng: np.random.Generator, target: str, background: Sequence[int] = BLACK,
                  state_background: bool | None = None) -> str:
    """An instruction to paint every `target` instance in its own color over `background`
    (a non-black background is always stated; black at random when `state_background` is None).
    """
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a non-empty category name, got {target!r}")
    bg = colorlib.as_rgb(background)
    text = prompts.choice(rng, _TEMPLATES).format(t=_write_target(target))
    if state_background or (state_background is None and (bg != BLACK or rng.random() < 0.5)):
        text += " " + colorlib.render_mapping({"background": bg}, rng, layout="sentences")
    elif bg != BLACK:
        raise ValueError(f"a non-black background {bg} must be stated in the prompt")
    return text


def parse_prompt(prompt: str) -> dict:
    """{"target": str or None, "background": (r, g, b)} stated by an instance prompt.

    The background is black when not stated (what the model paints then).
    """
    background = BLACK
    for name, rgb in colorlib.parse_mapping(prompt).items():
        if name.strip().lower() in semantic.BACKGROUND_NAMES:
            background = rgb
    target = prompts.find_subject(prompt, _TARGET)
    return {"target": target, "background": background}
