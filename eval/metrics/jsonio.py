"""Strict JSON for every result file: one `jsonable`, one `write_json`, one `read_jsonl`.

NaN and +-inf (an undefined score, an infinite depth) become null, never the invalid JSON
tokens `NaN` / `Infinity` that `json.dumps` writes by default, and never strings; the callers
count them (`nonfinite` collects the path of each) so a report can say how many values were
undefined. numpy scalars and arrays become Python numbers and lists, paths strings.

It lives in `eval.metrics` because that package is the project's leaf library (numpy, scipy,
pycocotools and `tasks` only): the trainer's metric log (`vision_banana.metrics_io`), the demo
and the benchmarks all import it without importing each other.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping

import numpy as np


def jsonable(obj, nonfinite: list[str] | None = None, _path: str = ""):
    """`obj` as strict-JSON-able Python values; NaN / inf -> None, their paths appended to
    `nonfinite` (e.g. "models.ours.result.psnr") when a list is given."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, nonfinite, f"{_path}.{k}" if _path else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, nonfinite, f"{_path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), nonfinite, _path)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        if math.isfinite(obj):
            return float(obj)
        if nonfinite is not None:
            nonfinite.append(_path)
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps(obj, nonfinite: list[str] | None = None, **kwargs) -> str:
    """`json.dumps` of `jsonable(obj)`; raises rather than write NaN / Infinity."""
    return json.dumps(jsonable(obj, nonfinite), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj, nonfinite: list[str] | None = None) -> pathlib.Path:
    """Writes `obj` as indented strict JSON (parent folders created); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj, nonfinite, indent=1) + "\n")
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON Lines file, in order (blank lines skipped); a bad line is an error
    naming the file and line."""
    path = pathlib.Path(path)
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON record: {e}") from None
    return records
