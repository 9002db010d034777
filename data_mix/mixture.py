"""Weighted mixtures of sources as a random-access map: global example index -> example.

Sampling order (what makes multi-host runs and restarts reproducible):

1. Each source s contributes the positions 0..len(s)-1, shuffled with the source's own seed
   (`grain.MapDataset.range(n).seed(seed_s).shuffle().repeat()`: every epoch reshuffled; O(1)
   memory, a Feistel index shuffle per lookup: ~7 us at a million records, ~40 us at 1,000,
   but ~0.4-5 ms for sources of 100 down to a few records, where scanning many positions, as
   `source_of` loops do, gets slow).
2. `grain.MapDataset.mix` interleaves the sources by weight (deterministic; the share of each
   source is exact over every mixing period), and a seeded shuffle within windows of
   `shuffle_window` indices breaks the fixed interleave pattern, so the composition of a batch
   varies while the shares stay exact per window. (A cached numpy permutation per window
   rather than `grain.experimental.WindowShuffleMapDataset`, whose per-index Feistel shuffle
   costs ~0.4 ms per lookup for windows of a few hundred.)
3. Example g is built from its (source, position) by loading the record, applying the
   geometry (`transforms.prepare`) and the task builder (`builders.build`), with the numpy
   generator `default_rng([seed, g, attempt])` (attempt > 0 only when replacing a bad record):
   the example depends on nothing but g, the config and the data.

Because the map is on GLOBAL indices, process p of P reads, for global batch b of size G, the
examples [b*G + p*G/P, b*G + (p+1)*G/P) (`data_mix.iterator`); any process count or worker
count sees the same global sequence, and a restart at batch b continues exactly.

Bad records: a record that fails (the source raises on a corrupt file, or the builder on a
missing field) stops the run with that error, or, with `skip_bad=True`, is replaced by the next
position of the same source (deterministic) and counted. Records a source skipped on its own
(`data_mix.sources` with `skip_bad=True` mark them in `meta["skipped_bad"]`) count too. The run
stops with `BadRecordError` once bad records pass `max_bad_fraction` of the records read.

Config (ml_collections.ConfigDict; see `default_config()`):

    seed: int                       mixture seed (window shuffle, per-example augmentation)
    resolution: (H, W)              every example's image and target, pixels
    fit_mode: "crop" | "pad"        how records reach `resolution` (transforms.fit)
    shuffle_window: int             window of the mixed-order shuffle (0: plain interleave)
    skip_bad, max_bad_fraction, min_records_for_bad_check, max_consecutive_bad
    sources: {name: {source: "pkg.module:Class", kwargs: {...}, task: str, weight: float,
                     seed: int | None, crop_scale: (lo, hi) | None, flip_prob: float,
                     builder: {...builder options}}}
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import sys
import zlib
from typing import Any, Callable, Mapping

import grain
import ml_collections
import numpy as np

from data_mix import builders, transforms

_SOURCE_DEFAULTS = dict(kwargs={}, task="generation", weight=1.0, seed=None, crop_scale=None,
                        flip_prob=0.0, builder={})


def default_config() -> ml_collections.ConfigDict:
    """Mixture-level defaults; add entries under `sources` (see `source_config`)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.resolution = (256, 256)
    c.fit_mode = "crop"
    c.shuffle_window = 4096
    c.skip_bad = False
    c.max_bad_fraction = 0.01
    c.min_records_for_bad_check = 1000  # below this many records read, allow this share of them
    c.max_consecutive_bad = 16
    c.sources = ml_collections.ConfigDict()
    return c


def source_config(source: str | Callable, task: str, weight: float, **overrides) -> ml_collections.ConfigDict:
    """One `sources` entry with defaults filled: `source_config("data_mix.synthetic:SyntheticScenes",
    "depth", 0.05, kwargs=dict(seed=0, size=256, num_records=1000, split="train"))`."""
    entry = {**_SOURCE_DEFAULTS, "source": source, "task": task, "weight": weight, **overrides}
    unknown = set(entry) - set(_SOURCE_DEFAULTS) - {"source"}
    if unknown:
        raise KeyError(f"unknown source config keys {sorted(unknown)}; expected {sorted(_SOURCE_DEFAULTS)}")
    return ml_collections.ConfigDict(entry)


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A resolved `sources` entry."""
    name: str
    source: Any          # random access: __len__, __getitem__(i) -> record
    task: str
    weight: float
    seed: int            # shuffle seed of this source's order, uint32
    crop_scale: tuple[float, float] | None
    flip_prob: float
    builder: dict


class BadRecordError(RuntimeError):
    """Too many records could not be read or built."""


class Mixture:
    """Random-access weighted mixture: `mixture.example(g)` is global example g.

    Args:
      config: a ConfigDict as described in the module docstring.
      sources: optional {name: source object} overriding construction from `config.sources[name].source`
        (for sources built in code, e.g. in tests).
    """

    def __init__(self, config: ml_collections.ConfigDict, *, sources: Mapping[str, Any] | None = None):
        unknown = sorted(set(config.keys()) - set(default_config().keys()))
        if unknown:  # a typo ("shufle_window") must not silently fall back to a default
            raise KeyError(f"unknown mixture config keys {unknown}; expected {sorted(default_config().keys())}")
        self.config = config
        self.seed = int(config.seed)
        res = config.resolution
        self.resolution = (int(res), int(res)) if np.isscalar(res) else (int(res[0]), int(res[1]))
        self.fit_mode = str(config.get("fit_mode", "crop"))
        self.skip_bad = bool(config.get("skip_bad", False))
        self.max_bad_fraction = float(config.get("max_bad_fraction", 0.01))
        self.min_records_for_bad_check = int(config.get("min_records_for_bad_check", 1000))
        self.max_consecutive_bad = int(config.get("max_consecutive_bad", 16))
        if not config.sources:
            raise ValueError("mixture config has no sources")
        self.specs = [self._resolve(name, entry, (sources or {}).get(name))
                      for name, entry in config.sources.items()]
        total = sum(s.weight for s in self.specs)
        self.weights = [s.weight / total for s in self.specs]
        self.names = [s.name for s in self.specs]
        self.tasks = sorted({s.task for s in self.specs})
        self._window = int(config.get("shuffle_window", 0))
        self._window_seed = _derive_seed(self.seed, "window")
        self._positions = self._build_positions()
        # Counters for direct `example()` calls in this process (the iterator keeps its own).
        self.records_read = 0
        self.bad_records = 0

    # ------------------------------------------------------------------------------ public

    def __len__(self) -> int:
        return sys.maxsize  # every source repeats, reshuffled per epoch

    def position(self, global_index: int) -> tuple[int, int]:
        """(source number, position in that source's shuffled, repeated order) of example g; cheap."""
        g = int(global_index)
        if g < 0:
            raise IndexError(f"global index must be >= 0, got {g}")
        if self._window > 1:
            w, r = divmod(g, self._window)
            g = w * self._window + int(_window_permutation(self._window_seed, self._window, w)[r])
        return self._positions[g]

    def source_of(self, global_index: int) -> SourceSpec:
        """The source that example g is drawn from (no record is loaded)."""
        return self.specs[self.position(global_index)[0]]

    def example(self, global_index: int) -> dict:
        """Global example g: {image?, prompt, target, task, meta} at `self.resolution`.

        Raises the source's error for a bad record unless `skip_bad`; with `skip_bad` raises
        BadRecordError once this process's bad records pass `max_bad_fraction`.
        """
        example, bad = self.example_with_report(global_index)
        self.records_read += 1 + len(bad)
        self.bad_records += len(bad)
        self.check_bad(self.bad_records, self.records_read, bad)
        return example

    def example_with_report(self, global_index: int) -> tuple[dict, list[str]]:
        """(example g, descriptions of the bad records skipped to make it); touches no counter.

        This is what worker processes run; the counting happens where results are gathered.
        """
        s, pos = self.position(global_index)
        spec = self.specs[s]
        n = len(spec.source)
        bad: list[str] = []
        for attempt in range(self.max_consecutive_bad if self.skip_bad else 1):
            index = (int(pos) + attempt) % n
            # Same generator on a retry would make the substitute depend on how far the failed
            # attempt got; a fresh stream per attempt keeps the substitute reproducible alone.
            rng = np.random.default_rng([self.seed, int(global_index), attempt])
            try:
                example = self._make(spec, index, rng, int(global_index))
                for skipped in example["meta"].pop("skipped_bad", None) or ():
                    bad.append(f"{spec.name}[{skipped.get('index')}]: {skipped.get('error')}")
                return example, bad
            except Exception as e:  # noqa: BLE001 - any failure of a record is a bad record
                if not self.skip_bad:
                    e.add_note(f"while making example {global_index} from source {spec.name!r} "
                               f"record {index} (set skip_bad=True to skip bad records)")
                    raise
                bad.append(f"{spec.name}[{index}]: {type(e).__name__}: {e}")
        raise BadRecordError(
            f"source {spec.name!r}: {len(bad)} consecutive bad records from position {pos} "
            f"(max_consecutive_bad={self.max_consecutive_bad}); last: {bad[-1]}")

    def check_bad(self, bad_records: int, records_read: int, recent: list[str] = ()) -> None:
        """Raises BadRecordError when bad records exceed the allowed share of records read."""
        if recent:
            logging.warning("skipped %d bad record(s): %s", len(recent), "; ".join(recent))
        allowed = self.max_bad_fraction * max(records_read, self.min_records_for_bad_check)
        if bad_records > allowed:
            last = f"; last: {recent[-1]}" if recent else ""
            raise BadRecordError(
                f"{bad_records} bad records out of {records_read} read "
                f"({bad_records / max(records_read, 1):.2%}) exceeds max_bad_fraction="
                f"{self.max_bad_fraction:.2%} (checked over at least "
                f"{self.min_records_for_bad_check} records){last}")

    # ------------------------------------------------------------------------------ internals

    def _make(self, spec: SourceSpec, index: int, rng: np.random.Generator, global_index: int) -> dict:
        record = builders.select_fields(spec.task, spec.source[index])
        record = transforms.prepare(record, rng, self.resolution, crop_scale=spec.crop_scale,
                                    flip_prob=spec.flip_prob, fit_mode=self.fit_mode)
        example = builders.build(spec.task, record, rng, **spec.builder)
        _check_example(example, self.resolution, f"{spec.name}[{index}]")
        example["meta"] = {**example.get("meta", {}), "source": spec.name, "source_index": index,
                           "global_index": global_index}
        return example

    def _build_positions(self) -> grain.MapDataset:
        parts = [grain.MapDataset.range(len(s.source)).seed(s.seed).shuffle().repeat()
                 .map(_Tag(i)) for i, s in enumerate(self.specs)]
        return grain.MapDataset.mix(parts, self.weights) if len(parts) > 1 else parts[0]

    def _resolve(self, name: str, entry, override) -> SourceSpec:
        entry = entry.to_dict() if isinstance(entry, ml_collections.ConfigDict) else dict(entry)
        unknown = set(entry) - set(_SOURCE_DEFAULTS) - {"source"}
        if unknown:
            raise KeyError(f"source {name!r}: unknown config keys {sorted(unknown)}; "
                           f"expected {sorted(set(_SOURCE_DEFAULTS) | {'source'})}")
        entry = {**_SOURCE_DEFAULTS, **entry}
        if override is not None:
            source = override
        elif "source" not in entry:
            raise KeyError(f"source {name!r}: config needs 'source' (an import path 'pkg.module:Class')")
        else:
            source = _import(entry["source"], name)(**dict(entry["kwargs"] or {}))
        if len(source) == 0:
            raise ValueError(f"source {name!r} ({type(source).__name__}) is empty")
        weight = float(entry["weight"])
        if not weight > 0:
            raise ValueError(f"source {name!r}: weight must be > 0, got {weight}")
        if entry["task"] not in builders.names():
            raise ValueError(f"source {name!r}: unknown task {entry['task']!r}; builders: {builders.names()}")
        seed = entry["seed"] if entry["seed"] is not None else _derive_seed(int(self.config.seed), name)
        crop = entry["crop_scale"]
        return SourceSpec(name=name, source=source, task=entry["task"], weight=weight, seed=int(seed),
                          crop_scale=tuple(crop) if crop is not None else None,
                          flip_prob=float(entry["flip_prob"]), builder=dict(entry["builder"] or {}))


class _Tag:
    """position -> (source number, position); a class so the pipeline pickles into workers."""

    def __init__(self, source_number: int):
        self.source_number = source_number

    def __call__(self, position: int) -> tuple[int, int]:
        return self.source_number, int(position)


@functools.lru_cache(maxsize=16)
def _window_permutation(seed: int, window: int, index: int) -> np.ndarray:
    """The order of mixed indices inside window `index` (int64 (window,)); cached per process."""
    return np.random.default_rng([seed, index]).permutation(window)


def _derive_seed(seed: int, name: str) -> int:
    """A uint32 seed from the mixture seed and a name: adding a source leaves the others' orders."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def _import(path: str | Callable, name: str) -> Callable:
    if callable(path):
        return path
    path = str(path)
    # "pkg.module:Class" (preferred) or "pkg.module.Class".
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ImportError(f"source {name!r}: cannot import {path!r} (expected 'pkg.module:Class'): {e}") from e
    return obj


def _check_example(example: dict, size: tuple[int, int], where: str) -> None:
    """Batches need fixed shapes: catch a builder that changed the size here, naming the record."""
    for key in ("image", "target"):
        if key in example and example[key] is not None:
            arr = example[key]
            if arr.dtype != np.uint8 or arr.shape != (*size, 3):
                raise ValueError(f"{where}: example {key!r} is {arr.dtype} {arr.shape}, expected uint8 {(*size, 3)}")
    if "target" not in example or not isinstance(example.get("prompt"), str):
        raise ValueError(f"{where}: example lacks 'target' or a str 'prompt' (keys {sorted(example)})")
