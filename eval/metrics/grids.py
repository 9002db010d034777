"""Image grids (PNG): rows of uint8 RGB panels with column titles, row captions and a title.

The one grid helper of the project: benchmark worst-case grids (`eval.report`), the demo's
example grids (`vision_banana.report`). It lives in `eval.metrics`, the leaf library (numpy,
OpenCV), so the demo and the benchmarks share it without importing each other.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LINE = 18  # pixels per text line at scale 0.5


def _text_block(lines: Sequence[str], width: int, height: int | None = None, scale: float = 0.5) -> np.ndarray:
    """uint8 (height, width, 3) white block with black text lines, wrapped to `width`; height
    None: as tall as the wrapped lines need."""
    wrapped = _wrap(lines, width, scale)
    if height is None:
        height = _LINE * len(wrapped) + 8
    block = np.full((height, width, 3), 255, np.uint8)
    top = max(4, (height - _LINE * len(wrapped)) // 2)
    for j, line in enumerate(wrapped):
        cv2.putText(block, line, (4, top + _LINE * j + 13), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return block


def _wrap(lines: Sequence[str], width: int, scale: float) -> list[str]:
    wrapped = []
    for line in lines:
        words, current = line.split(" "), ""
        for word in words:
            trial = f"{current} {word}".strip()
            if cv2.getTextSize(trial, _FONT, scale, 1)[0][0] > width - 8 and current:
                wrapped.append(current)
                current = word
            else:
                current = trial
        wrapped.append(current)
    return wrapped


def image_grid(path: str | os.PathLike, rows: Sequence[Sequence[np.ndarray]], *,
               col_titles: Sequence[str], row_titles: Sequence[str] = (), title: str = "",
               panel_height: int = 192, label_width: int = 220) -> pathlib.Path:
    """A PNG of rows of uint8 RGB panels (any sizes), scaled to `panel_height` rows (nearest
    neighbour when enlarging, so label maps stay exact; area averaging when shrinking), with
    column titles, a caption left of each row (lines split at newlines) and a title.

    Composed with numpy / OpenCV rather than matplotlib: pixel-exact panels and ~100x faster.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ncols = len(col_titles)
    widths = [0] * ncols
    scaled = []
    for r in rows:
        row = []
        for j, panel in enumerate(r[:ncols]):
            h, w = panel.shape[:2]
            size = (max(1, round(w * panel_height / h)), panel_height)
            interp = cv2.INTER_NEAREST if panel_height >= h else cv2.INTER_AREA
            row.append(cv2.resize(np.ascontiguousarray(panel), size, interpolation=interp))
            widths[j] = max(widths[j], size[0])
        scaled.append(row)
    widths = [w or panel_height for w in widths]
    gap = 6
    has_labels = bool(row_titles)
    total_width = label_width * has_labels + sum(widths) + gap * ncols
    header = [_text_block([title], total_width, max(28, 22 * len(_wrap([title], total_width, 0.6)) + 6), 0.6)] \
        if title else []
    title_rows = max([len(_wrap([t], w, 0.5)) for t, w in zip(col_titles, widths, strict=True)] or [1])
    head = 24 if title_rows == 1 else _LINE * title_rows + 8
    cols = [np.pad(_text_block([t], w, head), ((0, 0), (0, gap), (0, 0)), constant_values=255)
            for t, w in zip(col_titles, widths, strict=True)]
    lines = [np.concatenate(([_text_block([""], label_width, head)] if has_labels else []) + cols, axis=1)]
    for i, row in enumerate(scaled):
        cells = [_text_block(row_titles[i].split("\n"), label_width, panel_height)] if has_labels else []
        for j in range(ncols):
            cell = np.full((panel_height, widths[j] + gap, 3), 255, np.uint8)
            if j < len(row):
                cell[:, :row[j].shape[1]] = row[j]
            cells.append(cell)
        lines.append(np.concatenate(cells, axis=1))
        lines.append(np.full((gap, lines[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(header + lines, axis=0)
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
