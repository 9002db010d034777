"""Synthetic Cityscapes-format trees: street-like label maps, instances and predictions.

Used by the parity tests (our scores vs cityscapesScripts on the same files) and by
`benchmarks/eval_speed.py`. The files follow the real layout and encodings:

    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     uint8 label ids
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  uint16
    <root>/results/<city>_<seq>_<frame>_leftImg8bit.png                        uint8 label ids

Scenes have the structure that matters to the metrics: sky / buildings / vegetation above a
horizon, road and sidewalks below, poles and signs, instances of every instance class
(including the ignored caravan and trailer, and "group" regions without instance ids) with
occlusions, and ignored regions (ego vehicle, rectification border, out of roi, static).
Instance ids are label_id * 1000 + k, plain label ids elsewhere, as in the real dataset.
"""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from eval.metrics import cityscapes_labels as cl

# label id -> (relative height, aspect w/h, where, how many per scene (low, high)); "road"
# objects stand on the road, "walk" ones on the sidewalks.
_OBJECTS = {
    26: (0.10, 1.8, "road", (4, 10)), 27: (0.14, 1.5, "road", (0, 2)), 28: (0.16, 2.2, "road", (0, 2)),
    31: (0.16, 2.5, "road", (0, 1)), 29: (0.12, 1.6, "road", (0, 1)), 30: (0.10, 1.4, "road", (0, 1)),
    32: (0.06, 1.0, "road", (0, 2)), 24: (0.12, 0.35, "walk", (3, 9)), 25: (0.12, 0.4, "walk", (0, 3)),
    33: (0.06, 1.1, "walk", (0, 3)),
}
# Confusions a plausible model makes (true label id -> predicted label id).
_CONFUSIONS = {27: 28, 25: 24, 22: 21, 12: 11, 13: 12, 26: 29, 8: 7, 33: 32, 17: 20, 31: 28}


def synthetic_labels(rng: np.random.Generator, height: int = 1024, width: int = 2048,
                     absent: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """One street scene.

    Args:
      rng: random generator (the scene is a function of its state).
      height, width: image size in pixels.
      absent: label ids not to draw (their objects are skipped).
    Returns:
      label_ids uint8 (H, W) and instance_ids uint16 (H, W).
    """
    lab = np.full((height, width), 23, np.uint8)  # sky
    inst = np.full((height, width), 23, np.uint16)
    counters: dict[int, int] = {}

    def poly(points, label, instance=False):
        if label in absent:
            return
        pts = np.round(np.asarray(points, np.float64) * [width, height]).astype(np.int32)
        value = label
        if instance:
            value = label * 1000 + counters.get(label, 0)
            counters[label] = counters.get(label, 0) + 1
        cv2.fillPoly(lab, [pts], int(label))
        cv2.fillPoly(inst, [pts], int(value))

    def rect(x0, y0, x1, y1, label, instance=False):
        poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, instance)

    horizon = rng.uniform(0.45, 0.55)
    # Skyline: buildings of random heights, vegetation blobs, a wall and a fence.
    xs = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 10)]))
    for x0, x1 in zip(xs[:-1], xs[1:]):
        rect(x0, rng.uniform(0.05, horizon - 0.1), x1, horizon, 11)
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.2, horizon)
        t = np.linspace(0, 2 * np.pi, 24)
        r = rng.uniform(0.04, 0.12)
        poly(np.stack([cx + r * np.cos(t) * 0.6, cy + r * np.sin(t)], 1), 21)
    rect(rng.uniform(0, 0.5), horizon - 0.05, rng.uniform(0.5, 1), horizon, 12)
    rect(0.0, horizon - 0.03, rng.uniform(0.2, 0.6), horizon + 0.01, 13)
    # Ground: terrain, sidewalks, road (a trapezoid to the vanishing point), a parking patch.
    rect(0.0, horizon, 1.0, 1.0, 22)
    vx = rng.uniform(0.4, 0.6)
    poly([(0.0, 1.0), (vx - 0.08, horizon), (vx + 0.08, horizon), (1.0, 1.0)], 8)
    poly([(0.12, 1.0), (vx - 0.03, horizon), (vx + 0.03, horizon), (0.88, 1.0)], 7)
    rect(0.85, horizon + 0.1, 0.97, horizon + 0.2, 9)
    # Poles with signs and lights; one pole group.
    for _ in range(rng.integers(3, 7)):
        x = rng.uniform(0.02, 0.98)
        rect(x, rng.uniform(0.15, 0.35), x + 0.004, horizon + 0.15, 17)
        rect(x - 0.01, rng.uniform(0.2, 0.3), x + 0.014, 0.33, int(rng.choice([19, 20])))
    x = rng.uniform(0.1, 0.9)
    rect(x, 0.3, x + 0.01, horizon + 0.1, 18)
    # Objects, far (small, near the horizon) to near (large, low): near ones occlude far ones.
    objects = [label for label, (*_, (low, high)) in _OBJECTS.items()
               for _ in range(rng.integers(low, high + 1))]
    objects = [objects[k] for k in rng.permutation(len(objects))]
    depth = np.sort(rng.uniform(0.05, 1.0, len(objects)))
    for label, d in zip(objects, depth):
        rel_h, aspect, where, _ = _OBJECTS[label]
        h = rel_h * (0.2 + 1.2 * d)
        w = h * aspect * height / width
        bottom = horizon + (1.0 - horizon) * d * 0.9
        if where == "road":
            x = vx + rng.uniform(-0.9, 0.9) * (0.1 + d) * 0.4
        else:
            x = float(rng.choice([0.05, 0.85])) + rng.uniform(0, 0.1)
        x0, y0 = x - w / 2, bottom - h
        if label in (24, 25):  # people: head, torso, legs
            poly([(x0 + w * 0.3, y0), (x0 + w * 0.7, y0), (x0 + w, y0 + h * 0.5), (x0 + w * 0.8, bottom),
                  (x0 + w * 0.2, bottom), (x0, y0 + h * 0.5)], label, instance=True)
        else:  # vehicles: a body with a narrower cabin
            poly([(x0, y0 + h * 0.35), (x0 + w * 0.2, y0), (x0 + w * 0.8, y0), (x0 + w, y0 + h * 0.35),
                  (x0 + w, bottom), (x0, bottom)], label, instance=True)
    # A group region (e.g. "cargroup"): class label without instance id.
    rect(0.6, horizon + 0.02, 0.7, horizon + 0.06, 26)
    # Ignored regions: static clutter, out-of-roi corners, ego vehicle, rectification border.
    rect(0.3, horizon + 0.05, 0.33, horizon + 0.09, 4)
    poly([(0.0, 0.9), (0.08, 1.0), (0.0, 1.0)], 3)
    poly([(1.0, 0.9), (0.92, 1.0), (1.0, 1.0)], 3)
    t = np.linspace(np.pi, 2 * np.pi, 32)
    poly(np.stack([0.5 + 0.45 * np.cos(t), 1.04 + 0.1 * np.sin(t)], 1), 1)
    border = max(1, height // 200)
    for arr, value in ((lab, 2), (inst, 2)):
        arr[:border], arr[-border:], arr[:, :border], arr[:, -border:] = value, value, value, value
    return lab, inst


def _coarse_mask(rng, shape, fraction, cell=32):
    """bool (H, W): random cells (cell x cell pixels) covering about `fraction` of the image."""
    h, w = shape
    small = (rng.random((-(-h // cell), -(-w // cell))) < fraction).astype(np.uint8)
    return cv2.resize(small, (small.shape[1] * cell, small.shape[0] * cell),
                      interpolation=cv2.INTER_NEAREST)[:h, :w].astype(bool)


def synthetic_prediction(rng: np.random.Generator, label_ids: np.ndarray, kind: str = "structured",
                         never: tuple[int, ...] = ()) -> np.ndarray:
    """A prediction (uint8 label ids) for a ground-truth label map.

    kind="random": every pixel uniform over the 34 label ids (minus `never`).
    kind="structured": the ground truth with what models get wrong: boundaries shifted by a few
    pixels in some regions, class confusions (truck -> bus, car -> caravan, ...), blocks of
    noise, and ignored ground-truth regions painted with evaluated classes.
    """
    allowed = np.setdiff1d(np.arange(cl.NUM_LABEL_IDS), never).astype(np.uint8)
    if kind == "random":
        return allowed[rng.integers(0, allowed.size, label_ids.shape)]
    if kind != "structured":
        raise ValueError(f"kind must be 'structured' or 'random', got {kind!r}")
    shape = label_ids.shape
    pred = label_ids.copy()
    shifted = np.roll(label_ids, (int(rng.integers(2, 6)), int(rng.integers(-5, 6))), axis=(0, 1))
    pred = np.where(_coarse_mask(rng, shape, 0.4), shifted, pred)
    confuse = np.arange(256, dtype=np.uint8)
    for src, dst in _CONFUSIONS.items():
        confuse[src] = dst
    pred = np.where(_coarse_mask(rng, shape, 0.25, cell=64), confuse[pred], pred)
    evaluated = np.setdiff1d(cl.EVAL_IDS, never).astype(np.uint8)
    ignored = np.isin(pred, [lab.id for lab in cl.LABELS if lab.ignore_in_eval and lab.id >= 0])
    fill = evaluated[rng.integers(0, evaluated.size, shape)]
    pred = np.where(ignored & _coarse_mask(rng, shape, 0.8, cell=16), fill, pred)
    noise = allowed[rng.integers(0, allowed.size, shape)]
    pred = np.where(_coarse_mask(rng, shape, 0.05, cell=16), noise, pred)
    for label_id in never:
        pred[pred == label_id] = 0
    return pred.astype(np.uint8)


def write_tree(root: str | pathlib.Path, num_images: int, height: int = 1024, width: int = 2048, *,
               seed: int = 0, split: str = "val", kind: str = "structured",
               absent: tuple[int, ...] = (), cities: tuple[str, ...] = ("frankfurt", "lindau", "munster"),
               first_index: int = 0) -> list[tuple[pathlib.Path, pathlib.Path, pathlib.Path]]:
    """Writes a synthetic Cityscapes tree with predictions; returns (pred, labelIds, instanceIds) paths.

    `absent` label ids are neither drawn nor predicted (their IoU is then undefined).
    `first_index` numbers the frames, so several calls can add images of other sizes to one tree.
    """
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(first_index, first_index + num_images):
        city = cities[i % len(cities)]
        stem = f"{city}_{i // len(cities):06d}_{19 * i + 19:06d}"
        folder = root / "gtFine" / split / city
        folder.mkdir(parents=True, exist_ok=True)
        lab, inst = synthetic_labels(rng, height, width, absent=absent)
        pred = synthetic_prediction(rng, lab, kind=kind, never=absent)
        paths = (results / f"{stem}_leftImg8bit.png", folder / f"{stem}_gtFine_labelIds.png",
                 folder / f"{stem}_gtFine_instanceIds.png")
        for path, image in zip(paths, (pred, lab, inst)):
            if not cv2.imwrite(str(path), image):
                raise OSError(f"could not write {path}")
        out.append(paths)
    return out
