"""Cityscapes prediction files: decoding on all cores, the official file matching, formats.

Formats of a prediction PNG (`to_label_ids`): labelIds, trainIds, or colors painted with the
official colors (`official_color_map`) or a JSON color map (`load_color_map`).

`evaluate_files` reads prediction / labelIds / instanceIds PNGs in a thread pool (OpenCV's
PNG decoder releases the GIL, so threads scale across cores) and counts each image in the
same worker (`eval.metrics.cityscapes.image_stats`, also GIL-free in its heavy parts); the
main thread only sums small arrays. Decoding is most of the cost (three PNGs, about 35 ms per
2048x1024 image on one core here, against a few ms of counting).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import json
import os
import pathlib
import time

import cv2
import numpy as np
from tqdm import tqdm

from eval.metrics import cityscapes_labels as cl
from eval.metrics.cityscapes import CityscapesEvaluator, image_stats


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """A single-channel label PNG as stored: uint8 or uint16 (H, W).

    Palette ("P" mode) PNGs give their palette indices, as PIL (which cityscapesScripts uses)
    reads them; OpenCV would expand them to colors.
    """
    path = os.fspath(path)
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"label image not found: {path}")
        raise ValueError(f"cannot decode {path} as an image")
    if image.ndim == 3:
        from PIL import Image  # only for palette PNGs

        with Image.open(path) as pil:
            if pil.mode != "P":
                raise ValueError(f"{path} has {image.shape[2]} channels ({pil.mode}); expected a "
                                 "single-channel label image (label ids as 8-bit gray or palette)")
            image = np.asarray(pil)
    return image


# Void label ids 1..6 (ego vehicle .. ground) that models do not predict, but that are
# trainIds of common classes (sidewalk, building, wall, fence, pole, traffic light).
_VOID_IDS = np.arange(1, 7)
TRAINID_SHARE = 0.05  # `auto`: at least this share of pixels in ids 1..6, none above 18


def _values(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:10])
    return shown + (" ..." if len(values) > 10 else "")


def check_label_ids(image: np.ndarray, fmt: str, name: str) -> None:
    """ValueError naming the file and the values found when a prediction image cannot hold
    what `fmt` says ("label" / "train" / "auto" / "color"; see eval.cityscapes).

    - label, auto (single channel): ids outside 0..33 (cityscapesScripts rejects unknown ids
      too), and, under `auto`, a map with no value above 18 (no vegetation, sky, person,
      car, ...) and at least 5 % of its pixels in the void ids 1..6 that no model predicts
      (as trainIds: sidewalk, building, wall, fence, pole, traffic light): a trainId map;
    - train: values outside 0..18 and 255;
    - auto (3 channels) with R = G = B and values 1..33 only: an id map saved as RGB, which
      `auto` would read as colours and score near 0.
    """
    if image.ndim == 3 and fmt == "auto":
        gray = (image == image[..., :1]).all()
        if gray and image.max(initial=0) <= 33 and image.max(initial=0) >= 1:
            raise ValueError(f"{name}: a 3-channel PNG with R = G = B holding values "
                             f"{_values(np.unique(image[..., 0]))}: an id map saved as RGB, not "
                             f"colours; save it single-channel, or pass --pred-format")
        return
    if image.ndim != 2 or fmt == "color":
        return
    values = np.unique(image)
    if fmt == "train":
        bad = values[(values > 18) & (values != 255)]
        if bad.size:
            raise ValueError(f"{name}: trainIds must be 0..18 or 255 (void); found {_values(bad)}")
        return
    bad = values[values > 33]
    if bad.size:
        hint = (" (0..18 and 255: trainIds? pass --pred-format train)"
                if set(values.tolist()) <= set(range(19)) | {255} else "")
        raise ValueError(f"{name}: Cityscapes label ids are 0..33; found {_values(bad)}{hint}")
    if fmt == "auto" and values.max(initial=0) <= 18:
        share = float(np.isin(image, _VOID_IDS).mean())
        if share >= TRAINID_SHARE:
            raise ValueError(
                f"{name}: {share:.0%} of the pixels hold the void label ids 1..6 and no id is "
                f"above 18: this looks like a trainId map; pass --pred-format train (or "
                f"--pred-format label to score it as label ids)")


def instance_path_for(gt_label_path: str | os.PathLike) -> pathlib.Path:
    """`*_gtFine_labelIds.png` -> `*_gtFine_instanceIds.png` beside it (the official rule)."""
    path = pathlib.Path(gt_label_path)
    if "labelIds" not in path.name:
        raise ValueError(f"{path} is not a *_labelIds.png file; cannot name its instanceIds file")
    return path.with_name(path.name.replace("labelIds", "instanceIds"))


def find_predictions(gt_label_paths, pred_root: str | os.PathLike) -> list[pathlib.Path]:
    """The prediction for each ground-truth file, found as cityscapesScripts finds it.

    A prediction matches `<city>_<seq>_<frame>*.png` anywhere under `pred_root`; none or
    several matches for one ground truth is an error naming it.
    """
    pred_root = pathlib.Path(pred_root)
    if not pred_root.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_root}")
    files = sorted((name, pathlib.Path(d) / name) for d, _, names in os.walk(pred_root)
                   for name in names if name.endswith(".png"))
    names = [name for name, _ in files]
    out = []
    for gt in gt_label_paths:
        parts = pathlib.Path(gt).name.split("_")
        if len(parts) < 4:
            raise ValueError(f"{gt} is not named <city>_<seq>_<frame>_gtFine_labelIds.png")
        prefix = "_".join(parts[:3])
        lo = bisect.bisect_left(names, prefix)
        hi = bisect.bisect_left(names, prefix + "\U0010ffff")
        if hi - lo != 1:
            found = "no prediction" if hi == lo else f"{hi - lo} predictions ({', '.join(names[lo:hi][:3])})"
            raise FileNotFoundError(f"{found} for ground truth {gt}: expected exactly one "
                                    f"{prefix}*.png under {pred_root}")
        out.append(files[lo][1])
    return out


def _score_one(pred_path, gt_path, pred_ids, instance_scores):
    t0 = time.perf_counter()
    pred = read_label_png(pred_path)
    check_label_ids(pred, pred_ids, os.fspath(pred_path))
    gt = read_label_png(gt_path)
    inst = read_label_png(instance_path_for(gt_path)) if instance_scores else None
    t1 = time.perf_counter()
    stats = image_stats(pred, gt, inst, pred_ids=pred_ids, name=os.fspath(pred_path))
    return stats, t1 - t0, time.perf_counter() - t1


def evaluate_files(pred_paths, gt_label_paths, *, pred_ids: str = "label", instance_scores: bool = True,
                   num_threads: int | None = None, progress: bool = True) -> dict:
    """Scores prediction PNGs against `*_gtFine_labelIds.png` (+ instanceIds beside them).

    Args:
      pred_paths, gt_label_paths: paired lists of files (see `find_predictions`).
      pred_ids: "label" (official format) or "train" (train ids, 255 = void).
      instance_scores: also compute iIoU (reads `*_gtFine_instanceIds.png`).
      num_threads: decoding threads; default all cores available to this process.
      progress: show a progress bar.
    Returns:
      `CityscapesEvaluator.result()` plus "timing_s": wall seconds, and decode / count seconds
      summed over images (per-thread wall time, so they add up to about threads x wall).
    """
    pred_paths, gt_label_paths = list(pred_paths), list(gt_label_paths)
    if len(pred_paths) != len(gt_label_paths):
        raise ValueError(f"{len(pred_paths)} predictions for {len(gt_label_paths)} ground-truth files")
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    evaluator = CityscapesEvaluator(pred_ids=pred_ids, instance_scores=instance_scores)
    decode_s = count_s = 0.0
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        jobs = pool.map(_score_one, pred_paths, gt_label_paths, [pred_ids] * len(pred_paths),
                        [instance_scores] * len(pred_paths))
        for stats, dt_decode, dt_count in tqdm(jobs, total=len(pred_paths), desc="cityscapes",
                                               disable=not progress, unit="img"):
            evaluator.add_stats(stats)
            decode_s += dt_decode
            count_s += dt_count
    result = evaluator.result()
    result["timing_s"] = {"wall": time.perf_counter() - start, "decode": decode_s, "count": count_s,
                          "threads": num_threads}
    return result


def official_color_map() -> tuple[np.ndarray, np.ndarray]:
    """(colors uint8 (K, 3), label ids (K,)): the official colors, each color's lowest label id
    (black -> unlabeled, the pole/polegroup gray -> pole)."""
    colors, ids = [], []
    for label_id in range(cl.NUM_LABEL_IDS):
        c = tuple(int(v) for v in cl.COLORS_BY_LABEL_ID[label_id])
        if c not in colors:
            colors.append(c)
            ids.append(label_id)
    return np.array(colors, np.uint8), np.array(ids, np.uint8)


def load_color_map(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(colors uint8 (K, 3), label ids (K,)) from a JSON {label name or id: color} file."""
    from tasks import colors as colorlib

    path = pathlib.Path(path)
    try:
        mapping = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--color-map file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--color-map {path}: not valid JSON: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"--color-map {path}: expected a JSON object {{class name: [r, g, b]}}")
    by_name = {lab.name.lower(): lab.id for lab in cl.LABELS if lab.id >= 0}
    colors, ids = [], []
    for key, value in mapping.items():
        k = str(key).strip().lower()
        label_id = int(k) if k.isdigit() else by_name.get(k)
        if label_id is None or not 0 <= label_id < cl.NUM_LABEL_IDS:
            raise ValueError(f"--color-map {path}: key {key!r} is no Cityscapes label name or id "
                             f"(e.g. 'road', 'traffic sign', '26')")
        try:
            rgb = colorlib.parse_color(value) if isinstance(value, str) else colorlib.as_rgb(value)
        except ValueError as e:
            raise ValueError(f"--color-map {path}: {key!r}: {e}") from None
        colors.append(rgb)
        ids.append(label_id)
    return np.array(colors, np.uint8), np.array(ids, np.uint8)


def to_label_ids(pred: np.ndarray, fmt: str, color_map, max_distance: float, name: str) -> np.ndarray:
    """A prediction image -> label ids (H, W) for the evaluator (see the --help epilog)."""
    from tasks import semantic

    check_label_ids(pred, fmt, name)  # out-of-range ids, trainIds / id maps under `auto`
    if fmt == "auto":
        fmt = "color" if pred.ndim == 3 else "label"
    if fmt == "color":
        if pred.ndim != 3:
            raise ValueError(f"{name}: --pred-format color needs an RGB PNG, got shape {pred.shape}")
        colors, ids = color_map
        index = semantic.nearest_color(pred, colors, max_distance)
        return np.where(index >= 0, ids[np.maximum(index, 0)], 0).astype(np.uint8)
    if pred.ndim != 2:
        raise ValueError(f"{name}: --pred-format {fmt} needs a single-channel PNG, got shape "
                         f"{pred.shape} (RGB predictions: --pred-format color)")
    if fmt == "train":
        return cl.TRAIN_TO_LABEL_LUT[np.where(pred > 255, 255, pred).astype(np.uint8)]
    return pred


class PredictionFiles:
    """The prediction file of each scored record (cityscapesScripts' matching rule); the other
    PNG files under the folder are `unused`."""

    def __init__(self, root: pathlib.Path, paths: dict[int, pathlib.Path]):
        self.root, self.paths = pathlib.Path(root), paths

    def path(self, index: int) -> pathlib.Path:
        return self.paths[index]

    def unused(self) -> list[str]:
        used = {p.resolve() for p in self.paths.values()}
        return sorted(p.relative_to(self.root).with_suffix("").as_posix() for p in self.root.rglob("*.png")
                      if p.resolve() not in used)
