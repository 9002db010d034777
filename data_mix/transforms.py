"""Geometric transforms applied consistently to every field of a record.

A record (docs/contracts.md "Records") holds several aligned rasters: the RGB `image`, and any of
`depth`, `normals`, `semantic`, `instance_masks`, `referring[*]["mask"]`, `mask`, and for
generation records `target`. Every function here moves all of them by the same geometric
operation, each with the resampling its meaning allows:

| field | dtype, shape | resize | pad value |
|---|---|---|---|
| `image`, `target` | uint8 (H,W,3) | area when shrinking, bilinear when enlarging | 0 (black) |
| `depth` | float32 (H,W) metres, NaN invalid | nearest (a blend across a depth edge invents a surface that is not there; NaN must stay NaN) | NaN |
| `normals` | float32 (H,W,3) unit, 0-vector invalid | nearest (a blend across a crease is not a unit normal of any surface) | 0 |
| `semantic` | int32 (H,W), -1 ignore | nearest (labels are exact) | -1 |
| `instance_masks` | bool (N,H,W) | nearest | False |
| `referring[i]["mask"]`, `mask` | bool (H,W) | nearest | False |

Camera intrinsics in `meta["intrinsics"]` (a 3x3 matrix as nested lists, `[fx, fy, cx, cy]`, or a
dict with those keys; pixel centres at integer coordinates, OpenCV convention) follow every
operation, so a depth record stays a valid pinhole camera. So do the pixel boxes
`meta["eval_crop"]` and `meta["valid_box"]` ([top, bottom, left, right], end exclusive). A horizontal flip negates the x
component of the normals (x points right in the Vision Banana frame) and swaps "left"/"right" in
referring expressions, prompts and captions. Other meta (3-D scene descriptions) is left as is;
`meta["hflip"]` says when a record is mirrored.

Functions take a record and return a new record (inputs are never modified); arrays that an
operation does not change may be shared with the input.
"""  # noqa: E501

from __future__ import annotations

import copy
import re
from typing import Any

import cv2
import numpy as np

Record = dict[str, Any]

# Fields resampled like photographs; everything else spatial is resampled by nearest neighbour.
_COLOR_KEYS = ("image", "target")
# key -> fill value when padding. (H, W) are axes 0-1, or 1-2 for (N, H, W) instance masks.
_NEAREST_KEYS = {"depth": np.nan, "normals": 0.0, "semantic": -1, "instance_masks": False, "mask": False}
_KNOWN_KEYS = set(_COLOR_KEYS) | set(_NEAREST_KEYS) | {
    "referring", "classes", "instance_classes", "caption", "prompt", "meta"}


def spatial_size(record: Record) -> tuple[int, int]:
    """(H, W) of the record's rasters; checks every spatial field agrees.

    Raises ValueError naming the field whose size differs from `image` (or `target`).
    """
    ref_key = "image" if "image" in record else "target"
    if ref_key not in record:
        raise ValueError(f"record has neither 'image' nor 'target' (keys: {sorted(record)})")
    hw = tuple(np.shape(record[ref_key])[:2])
    for key, arr in _spatial_fields(record):
        got = _hw(key, arr)
        if got != hw:
            raise ValueError(
                f"record {_record_id(record)}: field {key!r} is {got[0]}x{got[1]} but {ref_key!r} is "
                f"{hw[0]}x{hw[1]}; every raster of a record must be aligned")
    return hw  # type: ignore[return-value]


def resize(record: Record, size: tuple[int, int]) -> Record:
    """Resizes every raster of `record` to `size` = (H, W) pixels (see the module table).

    Intrinsics scale with the image: f' = f * s, c' = (c + 0.5) * s - 0.5 per axis.
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"resize: target size must be positive, got {size}")
    h, w = spatial_size(record)
    if (h, w) == (out_h, out_w):
        return dict(record)
    rows = _nearest_index(h, out_h)
    cols = _nearest_index(w, out_w)

    def color(img):
        shrink = out_h <= h and out_w <= w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(np.ascontiguousarray(img), (out_w, out_h), interpolation=interp)

    def nearest(key, arr):
        axis = _h_axis(key, arr)
        return np.take(np.take(arr, rows, axis=axis), cols, axis=axis + 1)

    sy, sx = out_h / h, out_w / w
    return _apply(record, color, nearest,
                  lambda k: (k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5),
                  lambda b: (b[0] * sy, b[1] * sy, b[2] * sx, b[3] * sx), (out_h, out_w))


def crop(record: Record, top: int, left: int, height: int, width: int) -> Record:
    """The window [top, top+height) x [left, left+width) of every raster; principal point shifts."""
    h, w = spatial_size(record)
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= h and left + width <= w):
        raise ValueError(
            f"crop window top={top} left={left} {height}x{width} does not fit in the {h}x{w} record "
            f"{_record_id(record)}")

    def window(key, arr):
        axis = _h_axis(key, arr)
        index = [slice(None)] * arr.ndim
        index[axis] = slice(top, top + height)
        index[axis + 1] = slice(left, left + width)
        return arr[tuple(index)]

    return _apply(record, lambda img: window("image", img), window,
                  lambda k: (k[0], k[1], k[2] - left, k[3] - top),
                  lambda b: (b[0] - top, b[1] - top, b[2] - left, b[3] - left), (height, width))


def pad(record: Record, top: int, bottom: int, left: int, right: int) -> Record:
    """Pads every raster with its invalid value (black, NaN depth, 0 normals, -1 labels, False)."""
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad amounts must be >= 0, got top={top} bottom={bottom} left={left} right={right}")

    def fill(key, arr, value):
        axis = _h_axis(key, arr)
        widths = [(0, 0)] * arr.ndim
        widths[axis] = (top, bottom)
        widths[axis + 1] = (left, right)
        return np.pad(arr, widths, constant_values=value)

    h, w = spatial_size(record)
    return _apply(record, lambda img: fill("image", img, 0),
                  lambda key, arr: fill(key, arr, _NEAREST_KEYS.get(key, False)),
                  lambda k: (k[0], k[1], k[2] + left, k[3] + top),
                  lambda b: (b[0] + top, b[1] + top, b[2] + left, b[3] + left),
                  (h + top + bottom, w + left + right))


def hflip(record: Record) -> Record:
    """Mirrors left-right: every raster, normals' x component, intrinsics' cx, and the words
    "left"/"right" in referring expressions, prompts and captions (a mirrored "man on the left"
    is on the right). meta["hflip"] records that the record is mirrored."""

    def mirror(key, arr):
        flipped = np.flip(arr, axis=_h_axis(key, arr) + 1)
        if key == "normals":
            flipped = flipped * np.array([-1.0, 1.0, 1.0], dtype=arr.dtype)
        return np.ascontiguousarray(flipped)

    h, w = spatial_size(record)
    out = _apply(record, lambda img: mirror("image", img), mirror,
                 lambda k: (k[0], k[1], (w - 1) - k[2], k[3]),
                 lambda b: (b[0], b[1], w - b[3], w - b[2]), (h, w))
    if "referring" in out:
        out["referring"] = [
            {**obj, "expressions": [swap_left_right(e) for e in obj.get("expressions", [])]}
            for obj in out["referring"]]
    for key in ("prompt", "caption"):  # "move the cup to the left" mirrors too
        if isinstance(out.get(key), str):
            out[key] = swap_left_right(out[key])
    out["meta"] = {**(out.get("meta") or {}), "hflip": not (out.get("meta") or {}).get("hflip", False)}
    return out


def random_crop(record: Record, rng: np.random.Generator, scale: tuple[float, float] = (0.5, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Record:
    """A random window covering `scale` of the area with aspect (w/h) in `ratio` (log-uniform),
    clipped to the record; the same window for every field."""
    h, w = spatial_size(record)
    area = rng.uniform(*scale) * h * w
    aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
    cw = int(np.clip(round(np.sqrt(area * aspect)), 1, w))
    ch = int(np.clip(round(np.sqrt(area / aspect)), 1, h))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop(record, top, left, ch, cw)


def fit(record: Record, size: tuple[int, int], mode: str = "crop",
        rng: np.random.Generator | None = None) -> Record:
    """Brings the record to exactly `size` = (H, W) for batching, keeping the aspect ratio.

    mode "crop": scale so the record covers `size`, then cut the excess (centred, or at a random
    offset when `rng` is given). mode "pad": scale so the record fits inside `size`, then pad
    centred with each field's invalid value; `meta["valid_box"]` = [top, bottom, left, right]
    (pixels, end exclusive) marks the unpadded region.
    """
    out_h, out_w = int(size[0]), int(size[1])
    h, w = spatial_size(record)
    if mode == "crop":
        s = max(out_h / h, out_w / w)
    elif mode == "pad":
        s = min(out_h / h, out_w / w)
    else:
        raise ValueError(f"fit mode must be 'crop' or 'pad', got {mode!r}")
    # Round, then clamp so float error never leaves the scaled record one pixel short or over.
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    sh, sw = (max(sh, out_h), max(sw, out_w)) if mode == "crop" else (min(sh, out_h), min(sw, out_w))
    out = resize(record, (sh, sw))
    if mode == "crop":
        dy, dx = sh - out_h, sw - out_w
        top = int(rng.integers(0, dy + 1)) if rng is not None else dy // 2
        left = int(rng.integers(0, dx + 1)) if rng is not None else dx // 2
        return crop(out, top, left, out_h, out_w)
    top, left = (out_h - sh) // 2, (out_w - sw) // 2
    out = pad(out, top, out_h - sh - top, left, out_w - sw - left)
    out["meta"] = {**out.get("meta", {}), "valid_box": [top, top + sh, left, left + sw]}
    return out


def prepare(record: Record, rng: np.random.Generator, size: tuple[int, int], *,
            crop_scale: tuple[float, float] | None = None, flip_prob: float = 0.0,
            fit_mode: str = "crop") -> Record:
    """Training-time geometry: optional random crop, `fit` to `size` (centred), then a
    horizontal flip with probability `flip_prob` (last, where the arrays are smallest).

    With `crop_scale=None` and `flip_prob=0` this is deterministic.
    """
    if crop_scale is not None:
        record = random_crop(record, rng, scale=tuple(crop_scale))
    flip = flip_prob > 0 and rng.random() < flip_prob
    record = fit(record, size, mode=fit_mode)
    return hflip(record) if flip else record


_LR = re.compile(r"\b(left|right)(most|ward|wards)?\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """'the cup left of the man' -> 'the cup right of the man' (case kept; leftmost -> rightmost)."""
    def swap(m: re.Match) -> str:
        word = m.group(1)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            new = new.upper()
        elif word[0].isupper():
            new = new.capitalize()
        return new + (m.group(2) or "")
    return _LR.sub(swap, text)


# ---------------------------------------------------------------------------------------------

def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel centre: floor((i + 0.5) * n_in / n_out)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def _h_axis(key: str, arr: np.ndarray) -> int:
    """Axis of H: 1 for (N,H,W) instance masks, 0 for every other raster."""
    return 1 if key == "instance_masks" else 0


def _hw(key: str, arr) -> tuple[int, int]:
    shape = np.shape(arr)
    axis = _h_axis(key, arr)
    return tuple(shape[axis:axis + 2])  # type: ignore[return-value]


def _spatial_fields(record: Record):
    """(key, array) of each raster; referring masks are reported as 'referring[i].mask'."""
    for key in _COLOR_KEYS + tuple(_NEAREST_KEYS):
        if key in record and record[key] is not None:
            if key == "instance_masks" and np.ndim(record[key]) != 3:
                raise ValueError(f"record {_record_id(record)}: 'instance_masks' must be (N,H,W), "
                                 f"got shape {np.shape(record[key])}")
            yield key, record[key]
    for i, obj in enumerate(record.get("referring") or []):
        yield f"referring[{i}].mask", obj["mask"]
    for key, value in record.items():
        if key not in _KNOWN_KEYS and isinstance(value, np.ndarray) and value.ndim >= 2:
            # Silently leaving an unknown raster untransformed would misalign it.
            raise ValueError(f"record {_record_id(record)}: unknown array field {key!r} "
                             f"{value.shape}; transforms know {sorted(_KNOWN_KEYS)}")


def _apply(record: Record, color_fn, nearest_fn, intrinsics_fn, box_fn, out_hw) -> Record:
    out = dict(record)
    for key in _COLOR_KEYS:
        if record.get(key) is not None:
            out[key] = color_fn(record[key])
    for key in _NEAREST_KEYS:
        if record.get(key) is not None:
            out[key] = nearest_fn(key, np.asarray(record[key]))
    if record.get("referring"):
        out["referring"] = [{**obj, "mask": nearest_fn("mask", np.asarray(obj["mask"]))}
                            for obj in record["referring"]]
    if "meta" in record:
        out["meta"] = _map_boxes(_map_intrinsics(record["meta"], intrinsics_fn), box_fn, out_hw)
    return out


_BOX_KEYS = ("eval_crop", "valid_box")


def _map_boxes(meta: dict, fn, out_hw: tuple[int, int]) -> dict:
    """Maps [top, bottom, left, right] pixel boxes in meta, clipped to the new (H, W)."""
    if not any(k in meta for k in _BOX_KEYS):
        return meta
    meta = dict(meta)
    h, w = out_hw
    for key in _BOX_KEYS:
        if meta.get(key) is not None:
            if len(meta[key]) != 4:
                raise ValueError(f"meta[{key!r}] must be [top, bottom, left, right], got {meta[key]!r}")
            t, b, l, r = fn([float(v) for v in meta[key]])
            t, b = int(np.clip(round(t), 0, h)), int(np.clip(round(b), 0, h))
            l, r = int(np.clip(round(l), 0, w)), int(np.clip(round(r), 0, w))
            meta[key] = [t, b, l, r]
    return meta


def _map_intrinsics(meta: dict, fn) -> dict:
    """Applies fn((fx, fy, cx, cy)) -> (fx, fy, cx, cy) to meta["intrinsics"] in its own format."""
    k = meta.get("intrinsics")
    if k is None:
        return meta
    meta = copy.copy(meta)
    if isinstance(k, dict):
        fx, fy, cx, cy = fn((k["fx"], k["fy"], k["cx"], k["cy"]))
        meta["intrinsics"] = {**k, "fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy)}
        return meta
    arr = np.asarray(k, dtype=np.float64)
    if arr.shape == (3, 3):
        fx, fy, cx, cy = fn((arr[0, 0], arr[1, 1], arr[0, 2], arr[1, 2]))
        new = arr.copy()
        new[0, 0], new[1, 1], new[0, 2], new[1, 2] = fx, fy, cx, cy
        meta["intrinsics"] = new.tolist() if not isinstance(k, np.ndarray) else new
    elif arr.shape == (4,):
        new = [float(v) for v in fn(tuple(arr))]
        meta["intrinsics"] = new if not isinstance(k, np.ndarray) else np.asarray(new)
    else:
        raise ValueError(f"meta['intrinsics'] must be 3x3, [fx, fy, cx, cy] or a dict, got shape {arr.shape}")
    return meta


def _record_id(record: Record) -> str:
    meta = record.get("meta") or {}
    return f"{meta.get('dataset', '?')}/{meta.get('id', '?')}"
