"""Binary-mask metrics (medical-style "segment the polyp"): Dice, HD95, easy / hard strata.

- Dice (%) = 200 |P & G| / (|P| + |G|); 100 when both masks are empty.
- HD95 (pixels) as MedPy's `medpy.metric.binary.hd95` (the usual reference in medical
  segmentation papers): surface pixels of a mask are those removed by one binary erosion with
  the 4-connected cross (pixels on the image edge count as surface); distances are Euclidean
  (`scipy.ndimage.distance_transform_edt`) from each surface pixel of one mask to the nearest
  surface pixel of the other, both directions pooled, and the 95th percentile taken with
  linear interpolation (`np.percentile`).
  Empty masks, where MedPy raises: both empty -> 0; exactly one empty -> `empty_hd95`, by
  default "diagonal" = the image diagonal in pixels (the largest possible distance, so a
  missed or hallucinated mask is the worst case and means stay finite); "nan" leaves it
  undefined (dropped from means, counted).
- Strata: easy / hard = the `fraction` (5%) of cases a reference model scores best / worst,
  ceil(fraction * N) cases each (at least one), ties broken by case name.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from eval.metrics.summary import json_float

_CROSS = ndimage.generate_binary_structure(2, 1)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient in percent of two bool (H, W) masks (100 if both are empty)."""
    pred, gt = _pair(pred, gt)
    total = int(pred.sum()) + int(gt.sum())
    return 100.0 if total == 0 else 200.0 * int(np.count_nonzero(pred & gt)) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask ^ ndimage.binary_erosion(mask, structure=_CROSS, iterations=1)


def _surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from every surface pixel of `a` to the nearest surface pixel of `b`."""
    return ndimage.distance_transform_edt(~_surface(b))[_surface(a)]


def hd95(pred: np.ndarray, gt: np.ndarray, empty_hd95: str = "diagonal") -> float:
    """95th-percentile symmetric surface distance in pixels (see the module docstring)."""
    pred, gt = _pair(pred, gt)
    has_pred, has_gt = pred.any(), gt.any()
    if not has_pred and not has_gt:
        return 0.0
    if not (has_pred and has_gt):
        if empty_hd95 == "diagonal":
            return float(math.hypot(*pred.shape))
        if empty_hd95 == "nan":
            return float("nan")
        raise ValueError(f"empty_hd95 must be 'diagonal' or 'nan', got {empty_hd95!r}")
    distances = np.hstack([_surface_distances(pred, gt), _surface_distances(gt, pred)])
    return float(np.percentile(distances, 95))


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"need two (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def strata(reference_scores: Mapping[str, float], fraction: float = 0.05,
           higher_is_better: bool = True) -> dict[str, list[str]]:
    """Easy / hard case names: the best / worst `fraction` of cases by a reference model's scores."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    items = [(float(v), str(k)) for k, v in reference_scores.items() if not math.isnan(float(v))]
    if not items:
        raise ValueError("no reference scores to stratify")
    k = max(1, math.ceil(fraction * len(items) - 1e-9))
    best_first = sorted(items, key=lambda it: (-it[0] if higher_is_better else it[0], it[1]))
    return {"easy": [name for _, name in best_first[:k]], "hard": [name for _, name in best_first[::-1][:k]]}


class BinaryMaskEvaluator:
    """Per-case Dice and HD95; means over all cases and over given strata."""

    def __init__(self, empty_hd95: str = "diagonal"):
        if empty_hd95 not in ("diagonal", "nan"):
            raise ValueError(f"empty_hd95 must be 'diagonal' or 'nan', got {empty_hd95!r}")
        self.empty_hd95 = empty_hd95
        self.cases: dict[str, dict[str, float]] = {}

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Scores one case (bool (H, W) masks); names must be unique."""
        if name in self.cases:
            raise ValueError(f"case {name!r} was already added")
        scores = {"dice": dice(pred, gt), "hd95": hd95(pred, gt, self.empty_hd95)}
        self.cases[name] = scores
        return scores

    def merge(self, other: "BinaryMaskEvaluator") -> None:
        """Adds another evaluator's cases."""
        overlap = self.cases.keys() & other.cases.keys()
        if overlap:
            raise ValueError(f"cases scored twice: {sorted(overlap)[:5]}")
        self.cases.update(other.cases)

    def _means(self, names) -> dict:
        missing = [n for n in names if n not in self.cases]
        if missing:
            raise KeyError(f"strata name cases that were not scored: {missing[:5]}")
        out = {"num_cases": len(names)}
        for key in ("dice", "hd95"):
            vals = np.array([self.cases[n][key] for n in names], np.float64)
            ok = ~np.isnan(vals)
            out[key] = json_float(vals[ok].mean()) if ok.any() else None
            if key == "hd95":
                out["hd95_undefined"] = int((~ok).sum())
        return out

    def result(self, strata_names: Mapping[str, list[str]] | None = None, per_case: bool = False) -> dict:
        """JSON-able means: "all", plus one entry per stratum (e.g. from `strata(...)`)."""
        out = {"benchmark": "binary_masks", "units": "dice in percent, hd95 in pixels",
               "empty_hd95": self.empty_hd95, "all": self._means(list(self.cases))}
        for stratum, names in (strata_names or {}).items():
            out[stratum] = self._means(list(names))
        if per_case:
            out["per_case"] = {n: {k: json_float(v) for k, v in s.items()} for n, s in self.cases.items()}
        return out


def load_reference_scores(path: pathlib.Path) -> dict[str, float]:
    """{case: score} from a JSON object or a two-column CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"--reference-scores file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--reference-scores {path}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--reference-scores {path}: expected a JSON object {{case: score}}")
        return {str(k): float(v) for k, v in data.items()}
    scores = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        try:
            scores[row[0].strip()] = float(row[1])
        except (IndexError, ValueError):
            if n == 1:
                continue  # header
            raise ValueError(f"--reference-scores {path}:{n}: expected '<name>,<score>', got {row}") from None
    return scores
