"""What every dataset reader shares: random access, bad-record policy, record hygiene.

A source (docs/contracts.md, "Records") is a random-access sequence of records:
`len(source)`, `source[i] -> dict`, and an attribute `name`. Sources are deterministic (record
i depends only on i and the files) and picklable (grain worker processes receive a pickled
copy; open file handles are re-opened lazily in each process, see `storage.py`).

Bad records. Reading a record can fail on a missing or corrupt file, or on a value outside what
the dataset allows (a label id not in its table). Such failures raise `RecordError`, whose
message names the source, the record index and the offending file or value. With
`skip_bad=True` a source instead returns the NEXT good record (i+1, i+2, ... wrapping around;
deterministic), and marks what it passed over in the returned record's
`meta["skipped_bad"] = [{"index": j, "error": "..."}, ...]`. The marker travels with the
record across process boundaries, so a mixture can count skips wherever records are gathered;
`Source.bad_count` / `Source.bad_indices` count them in the current process too. A source whose
every record is bad raises. The TFDS packer drops marked substitutes so that a pack holds each
good record once.
"""

from __future__ import annotations

import abc
import operator
from typing import Any

import numpy as np


class RecordError(ValueError):
    """A record cannot be read: missing/corrupt file, wrong format, out-of-range value.

    The message names the file (or key/value) and what was expected; `Source.__getitem__`
    prefixes the source name and the record index.
    """


class Source(abc.ABC):
    """Base of the dataset readers: subclasses set `self.name` and implement `__len__`/`_load`.

    Args:
      skip_bad: on a bad record return the next good one (marked in `meta["skipped_bad"]`)
        instead of raising `RecordError`.
    """

    name: str = "source"
    #: Lines a benchmark report prints about how this reader read its ground truth (which
    #: file or variant, an unverified convention); empty when there is nothing to say.
    notes: tuple[str, ...] = ()

    def __init__(self, *, skip_bad: bool = False):
        self.skip_bad = bool(skip_bad)
        self.bad_count = 0                # bad records met by this process (each read counts)
        self.bad_indices: set[int] = set()

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of records."""

    @abc.abstractmethod
    def _load(self, index: int) -> dict[str, Any]:
        """Record `index` (0 <= index < len); raises RecordError (or OSError) on bad input."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} records")
        if not self.skip_bad:
            return self._checked_load(i)
        skipped = []
        for step in range(n):
            j = (i + step) % n
            try:
                record = self._checked_load(j)
            except RecordError as e:
                self.bad_count += 1
                self.bad_indices.add(j)
                skipped.append({"index": j, "error": str(e)})
                continue
            if skipped:
                record["meta"]["skipped_bad"] = skipped
            return record
        raise RecordError(f"{self.name}: all {n} records are bad; first error: {skipped[0]['error']}")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, records={len(self)})"

    def _checked_load(self, i: int) -> dict[str, Any]:
        try:
            record = self._load(i)
        except RecordError as e:
            raise RecordError(f"{self.name} record {i}: {e}") from e
        except (OSError, EOFError) as e:
            # Unwrapped I/O failures (truncated zip member, HDF5 read error) are bad records too.
            raise RecordError(f"{self.name} record {i}: {type(e).__name__}: {e}") from e
        return record


def clean_depth(depth: np.ndarray, *, what: str, keep_inf: bool = False) -> np.ndarray:
    """float32 (H, W) metres with every invalid pixel set to NaN.

    Invalid: NaN, <= 0 (0 is the "no measurement" code of KITTI, ScanNet, NYUv2 raw, iBims),
    and +inf unless `keep_inf` (a far-away sky the depth codec renders white). `what` names the
    file in the error raised for a non-2-D array.
    """
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise RecordError(f"{what}: expected a 2-D depth map, got shape {d.shape}")
    d = d.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        bad = ~(d > 0)                       # catches NaN and <= 0
        if not keep_inf:
            bad |= np.isinf(d)
    d[bad] = np.nan
    return d


def present_values(labels: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer map; a bincount for 8/16-bit maps (no sort)."""
    arr = np.asarray(labels)
    if arr.dtype in (np.uint8, np.uint16) and arr.size:
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=1)).astype(arr.dtype)
    return np.unique(arr)


def check_label_range(labels: np.ndarray, valid: np.ndarray, *, what: str) -> None:
    """Raise RecordError naming `what` and the offending values if `labels` has values not in `valid`."""
    present = present_values(labels)
    unknown = np.setdiff1d(present, valid)
    if unknown.size:
        shown = ", ".join(str(v) for v in unknown[:10].tolist())
        raise RecordError(f"{what}: label values {{{shown}}} are outside the dataset's table "
                          f"(allowed: {valid.min()}..{valid.max()}, {valid.size} ids)")


def masks_from_ids(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """bool (N, H, W): masks[k] = (ids == values[k]); vectorized, no per-instance loop."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros((0,) + ids.shape, dtype=bool)
    return ids[None, :, :] == values.reshape(-1, 1, 1)
