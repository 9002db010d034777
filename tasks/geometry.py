"""Image geometry of predictions: letterboxing an input to the model size, and bringing a
decoded output back to another size with one resampling policy per output kind.

    canvas, box = letterbox(photo, (h, w))         # uint8 (h, w, 3), photo fitted, black bars
    decoded = unletterbox(decoded_at_hw, box, photo.shape[:2], "depth")

Resampling (`RESIZE_KIND[task]` names the entry of `RESIZERS`):
  nearest  label maps, masks, instance masks (N, H, W): labels are exact, never blended
  depth    float32 metres: bilinear over finite values only (a normalised bilinear), so the
           +inf of a white sky is never blended with finite depth; non-finite pixels (and
           pixels with no finite neighbour) by nearest
  normals  float32 (H, W, 3): bilinear per component, then renormalised to unit length
  rgb      uint8 (H, W, 3): area averaging when shrinking, bilinear otherwise

The Predictor (`vision_banana.predict`) applies these to every output it returns at an input's
size, and prediction folders (`eval.predictions`) bring lower-resolution files to the ground
truth's size with the same functions, so every command gives the same maps. numpy + OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # (top, bottom, left, right) of the fitted image in the canvas


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for nearest-neighbour resizing (pixel centres)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp), n_in - 1)


def resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, ...) -> (h, w, ...) by nearest neighbour, any dtype (labels, masks)."""
    arr = np.asarray(arr)
    if arr.shape[:2] == tuple(size):
        return arr
    return arr[nearest_indices(arr.shape[0], size[0])][:, nearest_indices(arr.shape[1], size[1])]


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (H, W) metres -> (h, w): bilinear over finite values, non-finite by nearest."""
    depth = np.asarray(depth, np.float32)
    if depth.shape == tuple(size):
        return depth
    finite = np.isfinite(depth)
    hw = (size[1], size[0])
    if finite.all():
        return cv2.resize(depth, hw, interpolation=cv2.INTER_LINEAR)
    # Normalized bilinear: only finite neighbours contribute, so no value is blended with inf.
    weight = finite.astype(np.float32)
    num = cv2.resize(np.where(finite, depth, 0).astype(np.float32), hw,
                     interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(weight, hw, interpolation=cv2.INTER_LINEAR)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (num / den).astype(np.float32)
    far = resize_nearest(~finite, size) | ~(den > 0)
    out[far] = resize_nearest(depth, size)[far]
    return out


def unit_vectors(n: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) renormalised; 0-vector where non-finite or shorter than 1e-6."""
    n = np.nan_to_num(np.asarray(n, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    out = np.zeros_like(n)
    np.divide(n, norm, out=out, where=norm > 1e-6)
    return out


def resize_normals(normals: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 (H, W, 3) -> (h, w, 3): bilinear per component, renormalized."""
    normals = np.asarray(normals, np.float32)
    if normals.shape[:2] == tuple(size):
        return normals
    return unit_vectors(cv2.resize(normals, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> (h, w, 3): area averaging when shrinking, bilinear otherwise."""
    image = np.asarray(image)
    if image.shape[:2] == tuple(size):
        return image
    shrink = size[0] < image.shape[0] and size[1] < image.shape[1]
    return cv2.resize(image, (size[1], size[0]),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


RESIZERS: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {
    "nearest": resize_nearest, "depth": resize_depth, "normals": resize_normals,
    "rgb": resize_rgb}

#: Resampling of each task's decoded output (a key of RESIZERS).
RESIZE_KIND = {"semantic": "nearest", "referring": "nearest", "binary": "nearest",
               "instance": "nearest", "depth": "depth", "normals": "normals",
               "restoration": "rgb"}


def resize_kind(task: str) -> str:
    """The RESIZERS entry of `task`'s decoded outputs; KeyError naming the known tasks."""
    try:
        return RESIZE_KIND[task]
    except KeyError:
        raise KeyError(f"no resampling policy for task {task!r}; known: "
                       f"{', '.join(sorted(RESIZE_KIND))}") from None


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """uint8 (H, W, 3) scaled to fit (h, w), aspect ratio kept, centred on black.

    Returns the canvas uint8 (h, w, 3) and the box (top, bottom, left, right) the image fills.
    An image of the model's size is returned as it is (box = the whole canvas).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"letterbox expects a uint8 (H, W, 3) image, got {image.dtype} "
                         f"{image.shape}")
    h, w = image.shape[:2]
    out_h, out_w = size
    s = min(out_h / h, out_w / w)
    sh, sw = min(out_h, max(1, round(h * s))), min(out_w, max(1, round(w * s)))
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - sh) // 2, (out_w - sw) // 2
    canvas[top:top + sh, left:left + sw] = resize_rgb(image, (sh, sw))
    return canvas, (top, top + sh, left, left + sw)


def unletterbox(decoded, box: Box, size: tuple[int, int], task: str):
    """The decoded prediction inside `box`, resized to `size` (H, W) with `task`'s resampling.

    Instance outputs (`tasks.instance.Instances`) have their masks (N, h, w) resized by nearest;
    scores and colors are kept.
    """
    top, bottom, left, right = box
    if task == "instance":
        masks = np.asarray(decoded.masks)[:, top:bottom, left:right]
        resized = resize_nearest(masks.transpose(1, 2, 0), size).transpose(2, 0, 1)
        return decoded._replace(masks=np.ascontiguousarray(resized))
    cut = np.asarray(decoded)[top:bottom, left:right]
    return RESIZERS[resize_kind(task)](cut, size)
