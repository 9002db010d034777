"""Training metrics to JSON Lines and TensorBoard (tensorboardX: no TensorFlow needed).

Layout under the workdir:
    metrics.jsonl      one JSON object per write: {"step": int, "<name>": float, ...}; NaN / inf
                       values are null, their names listed under "nonfinite"
    tb/                TensorBoard event files (scalars, image grids)
    samples/           PNG sample grids (written by the trainer)

Only process 0 writes (multi-host runs would otherwise write N copies); other processes get a
writer whose methods do nothing, so call sites need no `if process_index == 0`.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping

import numpy as np

from eval.metrics import jsonio


def _scalar(value):
    """A Python number of a scalar (numpy / jax arrays of size 1 included)."""
    return np.asarray(value).item() if np.ndim(value) == 0 else value


class MetricWriter:
    """Appends scalars to `metrics.jsonl` and TensorBoard; writes images to TensorBoard.

    Args:
      workdir: run directory (created if missing).
      enabled: False on processes other than 0: every method is then a no-op.
    """

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True):
        self.enabled = enabled
        self.workdir = pathlib.Path(workdir)
        self._tb = None
        self._jsonl = None
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Append: a resumed run continues the same file (steps then repeat only if the
            # previous run logged past its last checkpoint, which readers can de-duplicate).
            self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")

    def _board(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter  # imported lazily: slow-ish import
            self._tb = SummaryWriter(str(self.workdir / "tb"))
        return self._tb

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One JSONL record {"step": step, **scalars} and one TensorBoard scalar per key."""
        if not self.enabled:
            return
        record = {"step": int(step)}
        # Strict JSON (eval.metrics.jsonio): NaN / inf are written as null and their keys
        # listed under "nonfinite", so a diverged loss stays visible and the file stays JSON.
        nonfinite: list[str] = []
        record.update(jsonio.jsonable({k: _scalar(v) for k, v in scalars.items()}, nonfinite))
        if nonfinite:
            record["nonfinite"] = nonfinite
        try:
            self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
            self._jsonl.flush()
        except OSError as e:  # e.g. a full disk: say which file
            raise OSError(e.errno, e.strerror, str(self.workdir / "metrics.jsonl")) from e
        board = self._board()
        for key, value in scalars.items():
            value = float(np.asarray(value))
            board.add_scalar(key, value, int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """TensorBoard images: each a uint8 (H, W, 3) array."""
        if not self.enabled:
            return
        board = self._board()
        for key, image in images.items():
            board.add_image(key, np.asarray(image), int(step), dataformats="HWC")

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            jsonl, self._jsonl = self._jsonl, None
            try:
                jsonl.close()
            except OSError:  # its write already failed and was raised; do not mask that error
                pass
        if self._tb is not None:
            self._tb.close()
            self._tb = None


# All records of a metrics.jsonl file, in order: the project's one JSON Lines reader.
read_jsonl = jsonio.read_jsonl
