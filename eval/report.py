"""Benchmark reports: results.json, report.md (our rows beside the published ones), charts, grids.

    report.write_report(out, benchmark="cityscapes", title=..., models={name: entry},
                        columns=[Column("miou", "mIoU")], references=references_for("cityscapes"),
                        sections=[...], figures={"per-class IoU": "chart_classes.png"})

`models` maps a model name to its entry: {"model": {...}, "result": <evaluator result>, ...};
`Column.key` is a dotted path into "result" ("pooled.mean"). Reference rows fill the columns
whose key their `metrics` name (by the last path component) and cite their source.

Pictures: `bar_chart` (matplotlib, no display needed) draws one group of bars per category
with every model side by side; `image_grid` (numpy / OpenCV) lays out RGB panels (worst cases:
input / prediction / ground truth ...). `colorize`, `overlay` and `heatmap` make those panels.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from eval.metrics import grids, jsonio
from eval.metrics.table import Metric
from eval.references import Reference


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: `key` (dotted path into a result, or a tuple of keys when one holds a
    dot, e.g. ("pooled", "under_11.25")), its header, decimals, multiplier."""

    key: str | tuple[str, ...]
    label: str
    digits: int = 3
    scale: float = 1.0

    @classmethod
    def of(cls, metric: Metric, label: str | None = None) -> "Column":
        """The column of a metric of the table (`eval.metrics.table`): its path, label, digits."""
        return cls(metric.path, metric.label if label is None else label, metric.digits)


# Strict JSON: one helper for every result file of the project (eval.metrics.jsonio).
jsonable, write_json = jsonio.jsonable, jsonio.write_json


def _parts(key: str | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(key) if isinstance(key, tuple) else tuple(key.split("."))


def lookup(result: Mapping, key: str | tuple[str, ...]):
    """The value at `key` (dotted path or tuple of keys) in nested dicts, or None."""
    value = result
    for part in _parts(key):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def fmt(value, digits: int = 3, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and scale == 1.0:
        return str(int(value))
    return f"{float(value) * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table (cells are str()-ed; "|" escaped)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(models: Mapping[str, Mapping], columns: Sequence[Column],
                  references: Sequence[Reference] = ()) -> str:
    """Our models (bold names) then the published rows, with a source column. A reference
    metric fills the first column whose key ends with its name (once: a paper's "mean" is not
    repeated under both a pooled and a per-image column)."""
    header = ["model"] + [c.label for c in columns] + ["source"]
    rows = []
    for name, entry in models.items():
        result = entry["result"]
        rows.append([f"**{name}**"] + [fmt(lookup(result, c.key), c.digits, c.scale) for c in columns]
                    + [entry.get("source", "this run")])
    first = {}
    for j, c in enumerate(columns):
        first.setdefault(_parts(c.key)[-1], j)
    for ref in references:
        values = [ref.metrics.get(_parts(c.key)[-1]) if first[_parts(c.key)[-1]] == j else None
                  for j, c in enumerate(columns)]
        if all(v is None for v in values):
            continue
        source = ref.source + (f" ({ref.note})" if ref.note else "")
        cells = [fmt(v, c.digits, c.scale) for v, c in zip(values, columns, strict=True)]
        rows.append([ref.model] + cells + [source])
    return markdown_table(header, rows)


def write_report(out: str | os.PathLike, *, benchmark: str, title: str, models: Mapping[str, Mapping],
                 columns: Sequence[Column], references: Sequence[Reference] = (),
                 intro: Sequence[str] = (), sections: Sequence[str] = (),
                 figures: Mapping[str, str | os.PathLike] | None = None, extra: Mapping | None = None
                 ) -> dict[str, pathlib.Path]:
    """Writes OUT/results.json and OUT/report.md; returns their paths.

    intro: lines under the title (dataset, protocol, limit); sections: more Markdown (per-class
    tables); figures: caption -> PNG path (shown relative to OUT); extra: more JSON keys.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {k: pathlib.Path(v) for k, v in (figures or {}).items()}
    rel = {k: (v.relative_to(out) if v.is_relative_to(out) else v).as_posix() for k, v in figures.items()}
    payload = {"benchmark": benchmark, "title": title, **(extra or {}), "models": models,
               "references": [r.to_json() for r in references], "figures": rel}
    nonfinite: list[str] = []
    payload = jsonable(payload, nonfinite)
    payload["nonfinite_values"] = {"count": len(nonfinite), "paths": nonfinite[:50],
                                   "note": "NaN / inf written as null"}
    json_path = write_json(out / "results.json", payload)
    md = [f"# {title}", ""] + [f"{line}  " for line in intro] + [""]
    md += [results_table(models, columns, references), ""]
    if not references:
        md += ["No published reference numbers for this benchmark (eval/references.py).", ""]
    for section in sections:
        md += [section, ""]
    for caption, path in rel.items():
        md += [f"## {caption}", "", f"![{caption}]({path})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    return {"json": json_path, "markdown": md_path}


# ------------------------------------------------------------------------------------ charts


def bar_chart(path: str | os.PathLike, groups: Sequence[str], series: Mapping[str, Sequence],
              *, ylabel: str, title: str, ylim: tuple[float, float] | None = None) -> pathlib.Path:
    """Grouped bars: one group per entry of `groups`, one bar per series (model), None = gap."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, k = len(groups), max(len(series), 1)
    width = 0.8 / k
    fig = Figure(figsize=(max(6.0, 0.3 * n * k + 3), 4.2), dpi=110)
    ax = fig.add_subplot()
    x = np.arange(n)
    for j, (name, values) in enumerate(series.items()):
        vals = np.array([np.nan if v is None else float(v) for v in values], np.float64)
        ax.bar(x - 0.4 + width * (j + 0.5), vals, width, label=name)
    ax.set_xticks(x, list(groups), rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return path


# Image grids: one helper for the benchmark reports and the demo's (eval.metrics.grids).
image_grid = grids.image_grid


def colorize(labels: np.ndarray, colors: np.ndarray, unknown=(0, 0, 0)) -> np.ndarray:
    """uint8 (H, W, 3): labels (H, W) painted with colors (K, 3); ids outside 0..K-1 -> unknown."""
    lut = np.vstack([np.asarray(colors, np.uint8).reshape(-1, 3), np.asarray(unknown, np.uint8)])
    lab = np.asarray(labels).astype(np.int64)
    return lut[np.where((lab >= 0) & (lab < len(lut) - 1), lab, len(lut) - 1)]


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3): `image` with bool (H, W) `mask` tinted by `color`."""
    out = np.asarray(image, np.float32).copy()
    m = np.asarray(mask, bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    return np.round(out).astype(np.uint8)


def heatmap(values: np.ndarray, vmax: float) -> np.ndarray:
    """uint8 (H, W, 3): float (H, W) values in [0, vmax] through the magma colormap; NaN gray."""
    v = np.asarray(values, np.float64)
    t = np.clip(np.nan_to_num(v / max(vmax, 1e-12), nan=0.0), 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap(np.round(t * 255).astype(np.uint8), cv2.COLORMAP_MAGMA),
                       cv2.COLOR_BGR2RGB)
    rgb[np.isnan(v)] = 128
    return rgb


def thumbnail(image: np.ndarray, height: int = 256) -> np.ndarray:
    """A copy at most `height` rows tall for grids: area averaging for uint8 RGB, nearest else."""
    h, w = image.shape[:2]
    if h <= height:
        return image
    size = (height, max(1, round(w * height / h)))
    if image.dtype == np.uint8 and image.ndim == 3:
        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    from eval.predictions import resize_nearest

    return resize_nearest(image, size)
