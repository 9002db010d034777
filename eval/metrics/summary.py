"""Reducing per-image scores to JSON-able results (shared by every metric module)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def json_float(x: float) -> float | None:
    """A score as JSON allows it: NaN / inf (undefined) -> None, numpy scalars -> float."""
    x = float(x)
    return x if math.isfinite(x) else None


def nan_mean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN, summed in order (NaN if none).

    This is how cityscapesScripts averages class scores (`getScoreAverage`), so the same order
    gives the same float.
    """
    total, count = 0.0, 0
    for v in values:
        v = float(v)
        if not math.isnan(v):
            total += v
            count += 1
    return total / count if count else float("nan")


def mean_over_records(records: Sequence[Mapping[str, float]], keys: Iterable[str]) -> dict[str, float | None]:
    """Per-key mean over per-image records (the "average over images" protocol), JSON-able."""
    out = {}
    for key in keys:
        vals = [float(r[key]) for r in records]
        out[key] = json_float(sum(vals) / len(vals)) if vals else None
    return out
