"""Predictions folders: finding each record's file, reading it, bringing it to the label size.

A predictions folder holds one file per scored item, named by the item's key (a relative path
without extension, e.g. `0001`, `scene0000_00/12`, `2011_09_26_drive_0002_sync/image_02/
0000000069`) plus one of the extensions the benchmark accepts. `PredictionFolder` indexes the
folder once; asking for a key that has no file raises `MissingPredictionError` naming the
expected path and the closest names present, so a misnamed or misplaced file is never skipped
silently. docs/eval.md lists the keys and formats of every benchmark.

Readers return numpy arrays in the project's conventions:

    read_label_map(path)             uint8 / uint16 (H, W) ids (palette PNGs: their indices)
    read_color(path)                 uint8 (H, W, 3) RGB
    read_depth(path, png_scale)      float32 (H, W) metres (.npy float; PNG value / png_scale)
    read_normals(path, convention)   float32 (H, W, 3) Vision Banana frame (x right, y up,
                                     z toward the camera); 0-vector where the file has none
    read_mask(path)                  bool (H, W)
    read_rle_json(path)              {key: COCO RLE} referring masks in one JSON file

Resizing to the ground truth's size (predictions made at a lower resolution, same aspect):
label maps and masks by nearest neighbour (labels are exact), depth bilinearly as Marigold
resizes predictions (+inf sky pixels carried by nearest, so no finite depth is invented next
to them), normals bilinearly then renormalized, RGB bilinearly: `tasks.geometry`'s policies,
the ones the Predictor applies to its own outputs. A prediction whose aspect
ratio differs from the ground truth's by more than 2 % is an error: that is a misaligned
prediction, not a low-resolution one.
"""

from __future__ import annotations

import difflib
import json
import os
import pathlib
import re

import cv2
import numpy as np

# The resampling policies are shared with the Predictor's letterbox geometry (one per output
# kind); re-exported here under their historical names.
from tasks.geometry import RESIZERS, nearest_indices, resize_depth, resize_nearest, resize_normals, resize_rgb  # noqa: F401

#: Normal conventions of prediction files (see `read_normals`).
NORMAL_CONVENTIONS = ("vision_banana", "opencv", "dsine", "omnidata")
# Signs taking a stored vector (.npy, or 2 * png - 1) to the Vision Banana frame. A Vision
# Banana / DSINE / Omnidata PNG is the same image (R = (1 - x) / 2): its raw vector is DSINE's.
_NPY_SIGNS = {"vision_banana": (1, 1, 1), "opencv": (1, -1, -1), "dsine": (-1, 1, 1),
              "omnidata": (-1, 1, 1)}
_PNG_SIGNS = {"vision_banana": (-1, 1, 1), "opencv": (1, -1, -1), "dsine": (-1, 1, 1),
              "omnidata": (-1, 1, 1)}
MAX_ASPECT_DIFFERENCE = 0.02


class MissingPredictionError(FileNotFoundError):
    """A scored item has no prediction file (or several): the message names the expected path."""


class PredictionFolder:
    """Files of a predictions folder by key (relative path without extension).

    Args:
      root: the folder.
      extensions: accepted extensions, lower case with the dot (".png", ".npy").
      what: who the folder belongs to, for messages (e.g. "model 'sam3'").
    """

    def __init__(self, root: str | os.PathLike, extensions: tuple[str, ...], what: str = ""):
        self.root = pathlib.Path(root)
        self.extensions = tuple(extensions)
        self.what = what or f"predictions {self.root}"
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.what}: predictions folder {self.root} does not exist")
        self._files: dict[str, list[pathlib.Path]] = {}
        for path in sorted(self.root.rglob("*")):
            ext = path.suffix.lower()
            if path.is_file() and ext in self.extensions:
                key = path.relative_to(self.root).with_suffix("").as_posix()
                self._files.setdefault(key, []).append(path)
        self._used: set[str] = set()

    def __len__(self) -> int:
        return len(self._files)

    def path(self, key: str) -> pathlib.Path:
        """The one file of `key`; MissingPredictionError naming the expected file otherwise."""
        found = self._files.get(key, [])
        if len(found) == 1:
            self._used.add(key)
            return found[0]
        expected = f"{self.root / key}{{{','.join(self.extensions)}}}" if len(self.extensions) > 1 \
            else f"{self.root / key}{self.extensions[0]}"
        if found:
            raise MissingPredictionError(
                f"{self.what}: {len(found)} predictions for {key!r} ({', '.join(p.name for p in found)}); "
                f"expected exactly one {expected}")
        raise MissingPredictionError(f"{self.what}: no prediction for {key!r}: expected file "
                                     f"{expected}{self._hint(key)}")

    def _hint(self, key: str) -> str:
        if not self._files:
            others = sorted(p.name for p in self.root.rglob("*") if p.is_file())[:3]
            return (f"; the folder holds no {'/'.join(self.extensions)} file"
                    + (f" (it has {', '.join(others)})" if others else " (it is empty)"))
        # Likely misnamings first: the same name elsewhere or up to case / zero padding, then
        # names containing the expected one (an added suffix), then merely similar names.
        target = _loose(key.rsplit("/", 1)[-1])
        close = [k for k in self._files if _loose(k.rsplit("/", 1)[-1]) == target]
        close = close or [k for k in self._files if target in _loose(k)]
        close = close or difflib.get_close_matches(key, list(self._files), n=3, cutoff=0.6)
        if close:
            shown = ", ".join(str(self._files[k][0].relative_to(self.root)) for k in close[:3])
            return f"; found instead: {shown}"
        return f"; the folder holds {len(self._files)} files such as {next(iter(self._files))!r}"

    def unused(self) -> list[str]:
        """Keys with a file that no `path` call asked for (reported, e.g. a misnamed file)."""
        return sorted(set(self._files) - self._used)


def _loose(name: str) -> str:
    """A file name with case and the zero padding of numbers ignored ("0007" ~ "7")."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name.lower())


# ----------------------------------------------------------------------------------- reading


def _imread(path: pathlib.Path) -> np.ndarray:
    # IMREAD_UNCHANGED: OpenCV 5 silently makes 16-bit PNGs 8-bit otherwise.
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        if not pathlib.Path(path).is_file():
            raise MissingPredictionError(f"prediction file {path} does not exist")
        raise ValueError(f"{path}: not a decodable image")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A prediction image as stored: (H, W) gray, or (H, W, 3) RGB (alpha dropped), uint8/16.

    Palette PNGs give their palette indices (as PIL, which cityscapesScripts uses, reads them).
    """
    path = pathlib.Path(path)
    image = _imread(path)
    if image.ndim == 3 and path.suffix.lower() == ".png":
        from PIL import Image  # only to tell palette PNGs apart

        with Image.open(path) as pil:
            if pil.mode == "P":
                return np.asarray(pil)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3:
        return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return image


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """uint8 / uint16 (H, W) ids from a single-channel or palette PNG."""
    image = read_image(path)
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel id image, got shape {image.shape}")
    return image


def read_color(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W, 3) RGB; gray images are replicated."""
    image = read_image(path)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit colour, got {image.dtype}")
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A numeric .npy array; ValueError naming the file when it is empty, truncated, pickled
    (object arrays are never loaded: allow_pickle=False) or not an .npy file at all."""
    path = pathlib.Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MissingPredictionError(f"prediction file {path} does not exist") from None
    except (EOFError, ValueError, OSError) as e:
        size = path.stat().st_size if path.is_file() else 0
        what = "an empty file (0 bytes)" if size == 0 else f"not a readable numeric .npy ({e})"
        raise ValueError(f"{path}: {what}; expected an array saved with np.save") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise ValueError(f"{path}: holds {getattr(array, 'dtype', type(array).__name__)}; "
                         "expected a numeric array")
    return array


def read_depth(path: str | os.PathLike, png_scale: float | None = None) -> np.ndarray:
    """float32 (H, W) metres: a float .npy ((H, W), (H, W, 1) or (1, H, W)), or a single-channel
    8/16-bit PNG holding metres * png_scale (256 for KITTI-style files, 1000 for millimetres)."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".npy":
        depth = read_npy(path)
        if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
            depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:2])
        if depth.ndim != 2 or depth.dtype.kind != "f":
            raise ValueError(f"{path}: expected a float (H, W) depth array in metres, got "
                             f"{depth.dtype} {depth.shape}")
        return depth.astype(np.float32, copy=False)
    if png_scale is None:
        raise ValueError(f"{path}: PNG depth needs --png-scale (stored value per metre, e.g. 256 "
                         "for KITTI-style 16-bit PNGs, 1000 for millimetres)")
    raw = read_label_map(path)
    return raw.astype(np.float32) / np.float32(png_scale)


def read_normals(path: str | os.PathLike, convention: str = "vision_banana") -> np.ndarray:
    """float32 (H, W, 3) unit normals in the Vision Banana frame.

    .npy: float vectors (H, W, 3) or (3, H, W) in `convention`'s axes ("vision_banana": x right,
    y up, z toward the camera; "opencv": x right, y down, z forward; "dsine" / "omnidata":
    x left, y up, z toward the camera). PNG (8 or 16 bit): the usual normal-map image holding
    (v + 1) / 2 per channel; the Vision Banana encoding (R = (1 - x) / 2, G = (1 + y) / 2,
    B = (1 + z) / 2) is the same image as DSINE's and Omnidata's, so those three conventions
    read a PNG alike; "opencv" PNGs hold (v + 1) / 2 of OpenCV-axis vectors. All-zero PNG
    pixels and zero vectors are "no prediction": the 0-vector (scored as 90 degrees off).
    NaN / inf components are an error naming the file and how many vectors hold them (write
    a zero vector where a method has no prediction), so garbage is never scored as 90 degrees.
    """
    if convention not in NORMAL_CONVENTIONS:
        raise ValueError(f"unknown normal convention {convention!r}; expected one of {NORMAL_CONVENTIONS}")
    path = pathlib.Path(path)
    if path.suffix.lower() == ".npy":
        n = read_npy(path)
        if n.ndim == 3 and n.shape[0] == 3 and n.shape[-1] != 3:
            n = n.transpose(1, 2, 0)
        if n.ndim != 3 or n.shape[-1] != 3 or n.dtype.kind != "f":
            raise ValueError(f"{path}: expected float normals (H, W, 3), got {n.dtype} {n.shape}")
        bad = ~np.isfinite(n).all(axis=-1)
        if bad.any():
            raise ValueError(f"{path}: {int(bad.sum())} of {bad.size} normal vectors hold NaN / "
                             "inf; write the zero vector where there is no prediction")
        signs = _NPY_SIGNS[convention]
        valid = np.ones(n.shape[:2], bool)
    else:
        rgb = read_image(path)
        if rgb.ndim != 3 or rgb.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"{path}: expected an 8/16-bit RGB normal map, got {rgb.dtype} {rgb.shape}")
        top = np.float32(np.iinfo(rgb.dtype).max)
        valid = rgb.any(axis=2)
        n = rgb.astype(np.float32) / top * 2 - 1
        signs = _PNG_SIGNS[convention]
    n = n.astype(np.float32) * np.asarray(signs, np.float32)
    return normalize(n, valid)


def normalize(n: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """float32 (H, W, 3) unit vectors; 0-vector where invalid, non-finite or shorter than 1e-6."""
    n = np.nan_to_num(np.asarray(n, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = norm[..., 0] > 1e-6
    if valid is not None:
        ok &= valid
    out = np.zeros_like(n)
    np.divide(n, norm, out=out, where=ok[..., None])
    return out


#: Extensions of lossy mask files, whose values scatter around 0 and 255 (thresholded).
LOSSY_MASK_EXTENSIONS = (".jpg", ".jpeg")


def check_binary_values(image: np.ndarray, path: str | os.PathLike) -> None:
    """ValueError naming `path` and the values found unless `image` holds only 0, 1 and the
    dtype's maximum (255 / 65535), with equal channels when it has several."""
    top = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1
    values = np.unique(image)
    other = values[~np.isin(values, (0, 1, top))]
    if other.size:
        shown = ", ".join(str(int(v)) for v in other[:10]) + (" ..." if other.size > 10 else "")
        raise ValueError(f"{path}: a binary mask may hold only 0, 1 and {top}; found "
                         f"{other.size} other values ({shown}) in {int(np.isin(image, other).sum())}"
                         " pixels")
    if image.ndim == 3 and not (image == image[..., :1]).all():
        raise ValueError(f"{path}: a colour binary mask must be gray (R = G = B); "
                         f"{int((image != image[..., :1]).any(axis=2).sum())} pixels are not")


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """bool (H, W) foreground of a mask image (PNG, or JPEG as Kvasir-SEG ships them).

    PNG (lossless): only 0, 1 and 255 (65535 for 16 bit) are allowed, gray when in colour;
    anything else is an error naming the file and the values (a probability or label map is
    not a mask). 0/1 images (maximum 1): foreground = 1; otherwise foreground = the maximum.
    JPEG (lossy): foreground = above half the range (> 127 for 8 bit; JPEG noise around 0 and
    255 stays on its side), colour read through the mean over the channels.
    """
    image = read_image(path)
    if pathlib.Path(path).suffix.lower() not in LOSSY_MASK_EXTENSIONS:
        check_binary_values(image, path)
    if image.ndim == 3:
        image = image.mean(axis=2)
    if image.max(initial=0) <= 1:
        return image >= 1
    half = 127.5 if image.max() <= 255 else 32767.5
    return image > half


def read_rle_json(path: str | os.PathLike) -> dict[str, dict]:
    """{key: {"size": [H, W], "counts": str}} from a JSON object of COCO RLEs by key."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingPredictionError(f"predictions file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{key: RLE}}, got {type(data).__name__}")
    for key, rle in data.items():
        if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
            raise ValueError(f"{path}: entry {key!r} is not a COCO RLE {{'size': [H, W], 'counts': ...}}")
    return data


def decode_rle(rle: dict) -> np.ndarray:
    """bool (H, W) of one COCO RLE (compressed string / bytes counts, or uncompressed list)."""
    from pycocotools import mask as mask_utils

    rle = dict(rle)
    h, w = (int(v) for v in rle["size"])
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


# ---------------------------------------------------------------------------------- resizing


def check_aspect(shape: tuple[int, ...], target: tuple[int, int], name: str) -> None:
    """ValueError unless (H, W) `shape` has the aspect ratio of `target` (within 2 %)."""
    h, w = shape[:2]
    th, tw = target
    if h <= 0 or w <= 0 or abs((w / h) / (tw / th) - 1) > MAX_ASPECT_DIFFERENCE:
        raise ValueError(f"prediction {name} is {h}x{w} but the ground truth is {th}x{tw}: "
                         "a lower-resolution prediction must keep the aspect ratio")


def to_size(pred: np.ndarray, size: tuple[int, int], kind: str, name: str) -> np.ndarray:
    """`pred` brought to the ground truth's (H, W) with the resampling of `kind` (RESIZERS)."""
    if tuple(pred.shape[:2]) == tuple(size):
        return pred
    check_aspect(pred.shape, size, name)
    return RESIZERS[kind](pred, size)


# ---------------------------------------------------------------------------------- writing


def _mkdir(path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_png(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
    """Lossless PNG of uint8/uint16 (H, W) or RGB (H, W, 3)."""
    path = _mkdir(path)
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(os.fspath(path), arr):
        raise OSError(f"cannot write {path}")
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> pathlib.Path:
    """bool (H, W) as an 8-bit PNG of 0 / 255."""
    return write_png(path, np.asarray(mask, bool).astype(np.uint8) * 255)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> pathlib.Path:
    """An array as .npy (float32 depth in metres, normals (H, W, 3) in the Vision Banana frame)."""
    path = _mkdir(path)
    np.save(path, np.asarray(array, np.float32))
    return path


class MaskPredictions:
    """Masks by key from a folder of PNGs or a JSON file of RLEs."""

    def __init__(self, path: pathlib.Path, what: str):
        self.path, self.what = pathlib.Path(path), what
        if self.path.is_file():
            self.rles, self.folder = read_rle_json(self.path), None
        else:
            self.rles, self.folder = None, PredictionFolder(self.path, (".png",), what)
        self._used: set[str] = set()

    def mask(self, key: str) -> np.ndarray:
        if self.folder is not None:
            return read_mask(self.folder.path(key))
        if key not in self.rles:
            near = [k for k in self.rles if k.split("_")[0] == key.split("_")[0]][:3]
            raise MissingPredictionError(
                f"{self.what}: no prediction for {key!r}: expected key {key!r} in {self.path}"
                + (f" (found {', '.join(near)})" if near else f" ({len(self.rles)} keys present)"))
        self._used.add(key)
        return decode_rle(self.rles[key])

    def unused(self) -> list[str]:
        return self.folder.unused() if self.folder is not None else sorted(set(self.rles) - self._used)
