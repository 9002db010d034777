"""Checkpoints of {train state, data iterator state} with orbax.

Layout: `<workdir>/checkpoints/<step>/` holds one orbax item per part of the train state
(`params`, `opt_state`, `ema`, `model_state`; an empty part is not written) and `data`, the
data iterator state as one JSON file per process (`process_<i>-of-<n>.json`, as grain's own
handler does, since each host reads its own slice of the data). `<step>` counts completed
updates. Orbax writes each step to a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous step as the latest one; leftover temporary folders are
removed when the next manager opens the directory.

The `step` of the train state is not stored: it is the checkpoint's step number.
`Predictor` restores only `params` or `ema` (plus `model_state`), never the optimizer.

Runs started from pretrained weights (`Checkpointer(init_from=...)`) do not write the frozen
pretrained parameters of `model_state` (T5, CLIP, VAE; LoRA base weights): `model_state` holds
the rest, and a `frozen` JSON item records the source (`vision_banana.init_from.frozen_record`).
`restore` reads those parameters back from that source, into the requested shardings, so a
restored `model_state` is complete either way.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import logging
import pathlib
import re
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from vision_banana import failures

STATE_ITEMS = ("params", "opt_state", "ema", "model_state")
DATA_ITEM = "data"
FROZEN_ITEM = "frozen"  # JSON: where the omitted frozen weights of model_state come from
CORRUPT_DIR = "checkpoints_corrupt"  # beside checkpoints/: damaged steps set aside, kept
# Statuses / phrases of TensorStore and orbax read failures: the bytes on disk are damaged or
# missing (as opposed to a checkpoint whose structure differs from the model's).
_READ_FAILURES = ("OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "Error reading", "Error opening",
                  "corrupt", "checksum", "truncated", "Unexpected end")


class CorruptCheckpointError(OSError):
    """A checkpoint step is damaged (a truncated or missing file, an unreadable data state).

    Attributes:
      step: the damaged step (None when unknown). The message names the file.
    """

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step

    def __str__(self) -> str:
        return str(self.args[0])


def _encode_data_state(state: Any) -> str:
    # Grain's DatasetIterator states are JSON-able dicts; DataLoader states are bytes (JSON
    # text). Keep both, tagging bytes so they come back as bytes.
    if isinstance(state, bytes):
        return json.dumps({"__bytes_b64__": base64.b64encode(state).decode("ascii")})
    return json.dumps(state, indent=1)


def _decode_data_state(text: str) -> Any:
    state = json.loads(text)
    if isinstance(state, dict) and set(state) == {"__bytes_b64__"}:
        return base64.b64decode(state["__bytes_b64__"])
    return state


def _read_data_state(path) -> Any:
    """The decoded state file `path`; CorruptCheckpointError naming it when it is not JSON."""
    try:
        return _decode_data_state(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, bad base64, bad bytes
        raise CorruptCheckpointError(
            f"{path}: data iterator state is damaged (not valid JSON: {e}); the checkpoint's "
            f"arrays may be intact, but the data position is lost") from None


# Per-process counters of an iterator state (`data_mix.iterator.MixtureIterator.get_state`):
# each process counts the records it read itself. Every other key describes the global
# position (next global batch / example, seed) and is the same on every process.
PER_PROCESS_COUNTERS = ("records_read", "bad_records")
_STATE_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json")


def _state_name(index: int, count: int) -> str:
    return f"process_{index}-of-{count}.json"


def reshard_data_states(states: list[Any], process_index: int, process_count: int,
                        where: str = "") -> Any:
    """This process's iterator state, derived from the states of a job of another size.

    Args:
      states: the saved states of processes 0..n-1 of the writing job, in order (JSON dicts).
      process_index, process_count: this process in the restoring job.
      where: the checkpoint folder, for error messages.
    Returns:
      The common global position (every key but the per-process counters, which must agree
      across `states`) with each counter of `PER_PROCESS_COUNTERS` summed over the old
      processes and split as evenly as integers allow (remainder to the lowest indices), so
      the new processes' counters add up to the old total.
    Raises:
      ValueError: a state is not a dict (a grain DataLoader state in bytes cannot be
        re-sliced), or the old processes disagree on a global key (naming it).
    """
    if not all(isinstance(s, dict) for s in states):
        kinds = sorted({type(s).__name__ for s in states})
        raise ValueError(f"{where}: data iterator states of type {kinds} cannot be restored with "
                         f"a different process count ({len(states)} -> {process_count}); only "
                         f"JSON dict states (data_mix MixtureIterator) can")
    merged = {k: v for k, v in states[0].items() if k not in PER_PROCESS_COUNTERS}
    for i, s in enumerate(states[1:], 1):
        for key in sorted(set(merged) | (set(s) - set(PER_PROCESS_COUNTERS))):
            if s.get(key) != merged.get(key):
                raise ValueError(
                    f"{where}: {_state_name(i, len(states))} has {key}={s.get(key)!r} but "
                    f"{_state_name(0, len(states))} has {merged.get(key)!r}; the processes of one "
                    f"job must agree on the global data position")
    for key in PER_PROCESS_COUNTERS:
        if any(key in s for s in states):
            total = sum(int(s.get(key, 0)) for s in states)
            share, rest = divmod(total, process_count)
            merged[key] = share + (1 if process_index < rest else 0)
    return merged


class DataStateHandler:
    """Orbax handler for data iterator states: one JSON file per process.

    A job restoring with the process count that wrote the checkpoint reads its own file. A job
    of another size (e.g. 2 hosts -> 1, or 1 -> 2) derives each process's state from all the
    written files with `reshard_data_states`: the position is global (data_mix samples on
    global example indices), so any process count continues at the same next global example.
    """

    def save(self, directory: epath.Path, args: "DataStateSave") -> None:
        name = _state_name(jax.process_index(), jax.process_count())
        (directory / name).write_text(_encode_data_state(args.state))

    def restore(self, directory: epath.Path, args: "DataStateRestore | None" = None) -> Any:
        del args
        index, count = jax.process_index(), jax.process_count()
        own = directory / _state_name(index, count)
        if own.exists():
            return _read_data_state(own)
        written: dict[int, dict[int, epath.Path]] = {}  # writer count -> {index: file}
        for path in directory.iterdir():
            if m := _STATE_FILE.fullmatch(path.name):
                written.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
        found = sorted(p.name for p in directory.iterdir())
        complete = [n for n, files in written.items() if sorted(files) == list(range(n))]
        if len(complete) != 1:
            raise FileNotFoundError(
                f"{own}: no data iterator state for process {index} of {count}, and no complete "
                f"set process_0..N-1-of-N.json to derive it from (found {found})")
        files = written[complete[0]]
        states = [_read_data_state(files[i]) for i in range(complete[0])]
        logging.info("data iterator state: derived process %d of %d from the %d state(s) "
                     "written by a %d-process job in %s", index, count, len(states),
                     complete[0], directory)
        return reshard_data_states(states, index, count, where=str(directory))

    def structure(self, directory: epath.Path) -> None:
        del directory

    def metadata(self, directory: epath.Path) -> None:
        del directory

    def finalize(self, directory: epath.Path) -> None:
        del directory

    def close(self) -> None:
        pass

    @classmethod
    def typestr(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
    pass


def _has_arrays(tree: Any) -> bool:
    return bool(jax.tree.leaves(tree))


def _damaged_file(message: str) -> str | None:
    """The file a TensorStore read error is about: the OCDBT database it names, narrowed to
    the one data file of the size it reports when there is exactly one."""
    db = re.search(r'at local file "([^"]+)"', message)
    if db is None:
        return None
    root = pathlib.Path(db.group(1))
    size = re.search(r"for value of size (\d+)", message)
    if size is not None and root.is_dir():
        hits = [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == int(size.group(1))]
        if len(hits) == 1:
            return str(hits[0])
    key = re.search(r'Error reading "([^"]+)"', message)
    return f"{root} (entry {key.group(1)})" if key else str(root)


def damage_in(error: BaseException, where: pathlib.Path, step: int | None
              ) -> CorruptCheckpointError | None:
    """A one-line CorruptCheckpointError when `error` (or its cause chain) is a read failure of
    damaged checkpoint files, None when it is something else (e.g. a structure mismatch)."""
    chain = failures.chain(error)
    for e in chain:
        if isinstance(e, CorruptCheckpointError):
            return CorruptCheckpointError(str(e), step)
    for e in chain:
        text = str(e)
        if isinstance(e, (OSError, EOFError, json.JSONDecodeError)) or any(
                p in text for p in _READ_FAILURES):
            first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
            named = _damaged_file(text) or getattr(e, "filename", None) or str(where)
            return CorruptCheckpointError(
                f"checkpoint step {step} is damaged: {named}: {type(e).__name__}: {first[:300]}",
                step)
    return None


class Checkpointer:
    """Save / restore train states and data iterator states under `<workdir>/checkpoints`.

    Args:
      workdir: the run directory.
      keep: how many most recent checkpoints to keep (None = all).
      async_save: write arrays in a background thread after the device-to-host copy (the
        train loop continues meanwhile; `save` still returns only once the state has been
        copied, so the next step may donate the buffers).
      read_only: never write (the Predictor's mode).
      init_from: the pretrained checkpoint the run started from ("" = none): saves omit the
        frozen pretrained params of `model_state`; restores re-import them from the path each
        checkpoint recorded, or from this one when the checkpoint moved there.
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int | None = 3,
                 async_save: bool = True, read_only: bool = False, init_from: str = ""):
        self.init_from = str(init_from or "")
        self._frozen_record: dict | None = None  # the same for every save of a run
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Mapping[str, Any], data_state: Any = None) -> None:
        """Save the train state parts (and the data iterator state, if given) as `step`.

        With `init_from`, `model_state` is written without its frozen pretrained params.
        """
        parts = {k: state[k] for k in STATE_ITEMS if k in state}
        items = {}
        if self.init_from and parts.get("model_state") is not None:
            from vision_banana import init_from

            frozen, parts["model_state"] = init_from.split_pretrained(parts["model_state"])
            if self._frozen_record is None:
                self._frozen_record = init_from.frozen_record(self.init_from, frozen)
            items[FROZEN_ITEM] = ocp.args.JsonSave(self._frozen_record)
        items.update({k: ocp.args.StandardSave(v) for k, v in parts.items() if _has_arrays(v)})
        if data_state is not None:
            items[DATA_ITEM] = DataStateSave(data_state)
        self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)

    def restore(self, step: int, abstract_state: Mapping[str, Any], *,
                items: Iterable[str] | None = None, with_data: bool = True
                ) -> tuple[dict[str, Any], Any]:
        """Restore `step` into the structure, dtypes and shardings of `abstract_state`.

        Args:
          step: a step from `all_steps()`.
          abstract_state: {part: tree of jax.ShapeDtypeStruct with `.sharding`} for the parts
            to restore (`params`, `opt_state`, `ema`, `model_state`).
          items: restrict to these parts (default: every part of `abstract_state` that has
            arrays).
          with_data: also return the data iterator state (None when it is not wanted).
        Returns:
          ({part: restored tree}, data iterator state or None). A `model_state` saved without
          its frozen pretrained params comes back complete: those are re-imported from the
          recorded `init_from` (FileNotFoundError naming it when it is gone).
        """
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
        names = list(items) if items is not None else [
            k for k in STATE_ITEMS if k in abstract_state and _has_arrays(abstract_state[k])]
        abstract_state = dict(abstract_state)
        frozen_abstract, source = None, None
        record = self._read_frozen_record(step) if "model_state" in names else None
        if record is not None:
            from vision_banana import init_from

            # Check the source before reading anything large: fail fast when it is gone.
            source = init_from.check_source(record, str(self.directory / str(step)),
                                            moved_to=self.init_from)
            frozen_abstract, abstract_state["model_state"] = init_from.split_pretrained(
                abstract_state["model_state"])
            if not _has_arrays(abstract_state["model_state"]):
                names.remove("model_state")  # nothing else was written
        args = {k: ocp.args.StandardRestore(abstract_state[k]) for k in names}
        if with_data:
            args[DATA_ITEM] = DataStateRestore()
        try:
            restored = self._manager.restore(int(step), args=ocp.args.Composite(**args))
        except Exception as e:  # orbax wraps reader errors in bare Exceptions
            damaged = damage_in(e, self.directory / str(step), step)
            if damaged is not None:
                raise damaged from e
            if not isinstance(e, (ValueError, KeyError)):
                raise
            raise ValueError(
                f"checkpoint {self.directory / str(step)} does not match the model built from "
                f"the config (items {names}): {e}") from e
        parts = {k: restored[k] for k in names}
        for k in STATE_ITEMS:  # parts with no arrays were not written; give them back as is
            if k in abstract_state and k not in parts and not _has_arrays(abstract_state[k]):
                parts[k] = abstract_state[k]
        if frozen_abstract is not None:
            frozen = init_from.reimport(source, frozen_abstract, progress=jax.process_index() == 0)
            parts["model_state"] = init_from.merge(frozen, parts["model_state"])
        return parts, (restored[DATA_ITEM] if with_data else None)

    def restore_latest(self, abstract_state: Mapping[str, Any], *, fall_back: bool = True
                       ) -> tuple[int | None, dict[str, Any] | None, Any]:
        """Restore the newest step that reads back; (None, None, None) without checkpoints.

        A damaged newest step (CorruptCheckpointError: a truncated or missing array file, an
        unreadable data state) is, with `fall_back`, moved to `<workdir>/checkpoints_corrupt/`
        (kept for inspection; orbax would otherwise refuse to save that step again) and the
        previous step restored, with a warning naming the file. Without `fall_back` (a
        multi-process job: the processes must agree, and each reads only its own shards) the
        error is raised with the command that sets the step aside by hand.

        Returns:
          (step, {part: restored tree}, data iterator state), as `restore`.
        """
        while True:
            steps = self.all_steps()
            if not steps:
                return None, None, None
            step = steps[-1]
            try:
                parts, data_state = self.restore(step, abstract_state)
                return step, parts, data_state
            except CorruptCheckpointError as e:
                if len(steps) == 1:
                    raise CorruptCheckpointError(
                        f"{e}; no earlier checkpoint to fall back to in {self.directory}",
                        step) from None
                aside = self.directory.parent / CORRUPT_DIR / str(step)
                if not fall_back:
                    raise CorruptCheckpointError(
                        f"{e}; to resume from step {steps[-2]}, set the damaged step aside: "
                        f"mkdir -p {aside.parent} && mv {self.directory / str(step)} {aside}",
                        step) from None
                moved = self.set_aside(step)
                logging.warning("checkpoint step %d is damaged (%s); moved to %s, falling back "
                                "to step %d", step, e, moved, steps[-2])

    def set_aside(self, step: int) -> pathlib.Path:
        """Move step `step` out of the checkpoint directory into `checkpoints_corrupt/`."""
        target = self.directory.parent / CORRUPT_DIR / str(step)
        if target.exists():
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            target = target.with_name(f"{step}.{stamp}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self._manager.reload()
        return target

    def _read_frozen_record(self, step: int) -> dict | None:
        """The `frozen` item of `step` (see `vision_banana.init_from.frozen_record`), or None
        when the checkpoint holds its whole model_state."""
        if not (self.directory / str(step) / FROZEN_ITEM).exists():
            return None
        restored = self._manager.restore(int(step), args=ocp.args.Composite(
            **{FROZEN_ITEM: ocp.args.JsonRestore()}))
        return dict(restored[FROZEN_ITEM])

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
