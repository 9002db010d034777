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
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

STATE_ITEMS = ("params", "opt_state", "ema", "model_state")
DATA_ITEM = "data"


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


class DataStateHandler:
    """Orbax handler for data iterator states: one JSON file per process."""

    def save(self, directory: epath.Path, args: "DataStateSave") -> None:
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        (directory / name).write_text(_encode_data_state(args.state))

    def restore(self, directory: epath.Path, args: "DataStateRestore | None" = None) -> Any:
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = directory / name
        if not path.exists():
            found = sorted(p.name for p in directory.iterdir())
            raise FileNotFoundError(
                f"{path}: no data iterator state for this process (found {found}); was the "
                f"checkpoint written with a different process count?")
        return _decode_data_state(path.read_text())

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


class Checkpointer:
    """Save / restore train states and data iterator states under `<workdir>/checkpoints`.

    Args:
      workdir: the run directory.
      keep: how many most recent checkpoints to keep (None = all).
      async_save: write arrays in a background thread after the device-to-host copy (the
        train loop continues meanwhile; `save` still returns only once the state has been
        copied, so the next step may donate the buffers).
      read_only: never write (the Predictor's mode).
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int | None = 3,
                 async_save: bool = True, read_only: bool = False):
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
        """Save the train state parts (and the data iterator state, if given) as `step`."""
        items = {k: ocp.args.StandardSave(state[k]) for k in STATE_ITEMS
                 if k in state and _has_arrays(state[k])}
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
          ({part: restored tree}, data iterator state or None).
        """
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
        names = list(items) if items is not None else [
            k for k in STATE_ITEMS if k in abstract_state and _has_arrays(abstract_state[k])]
        args = {k: ocp.args.StandardRestore(abstract_state[k]) for k in names}
        if with_data:
            args[DATA_ITEM] = DataStateRestore()
        try:
            restored = self._manager.restore(int(step), args=ocp.args.Composite(**args))
        except (ValueError, KeyError) as e:
            raise ValueError(
                f"checkpoint {self.directory / str(step)} does not match the model built from "
                f"the config (items {names}): {e}") from e
        parts = {k: restored[k] for k in names}
        for k in STATE_ITEMS:  # parts with no arrays were not written; give them back as is
            if k in abstract_state and k not in parts and not _has_arrays(abstract_state[k]):
                parts[k] = abstract_state[k]
        return parts, (restored[DATA_ITEM] if with_data else None)

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
