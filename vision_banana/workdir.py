"""A run directory's bookkeeping: the recorded config and the one-writer lock.

Config (`<workdir>/config.json`): the config the run's checkpoints were made with; `predict`,
`eval --workdir` and `export` rebuild the model from it. Rerunning a workdir compares the new
config with the recorded one before anything is written:

- keys that only say how long or how visibly the run goes (`RESUMABLE_KEYS`: steps, logging and
  checkpoint intervals, evaluators, the mesh, caches) may change freely: the record is updated
  once the restore succeeded;
- any other difference (model, optimizer, data, seed, ...) is refused with `ConfigChanged`
  listing the differing keys, unless the config sets `allow_config_change=True` or the workdir
  holds no checkpoint yet; then the old record is kept beside as `config.<UTC time>.json` and
  the new one is written, again only after a successful restore (or fresh start).

Refusing by default (rather than recording every change) keeps `config.json` describing the
checkpoints: a typo'd `--config` on a rerun must not make an intact run unloadable.

Lock (`<workdir>/train.lock`): JSON {host, pid, start, since} of the trainer that owns the
directory, created exclusively (O_CREAT | O_EXCL, atomic on local disks and NFSv3+). A second
trainer refuses with `WorkdirLocked` naming the holder. A lock whose holder was on this host and
is gone (no such pid, or a pid reused by a later process) is stale and taken over with a
warning; a lock from another host cannot be checked from here and is refused, naming the file to
delete once that job is known to be dead. In a multi-process job only process 0 takes it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import pathlib
import socket
from collections.abc import Mapping
from typing import Any

CONFIG_NAME = "config.json"
LOCK_NAME = "train.lock"
#: Dotted key prefixes that may differ between a run's recorded config and a rerun's.
RESUMABLE_KEYS = ("train.steps", "train.log_every", "train.checkpoint_every",
                  "train.keep_checkpoints", "train.async_checkpoint", "train.data_workers",
                  "train.compilation_cache_dir", "train.xla_options", "xla.", "mesh.", "evaluators.",
                  "predict.", "allow_config_change")


class ConfigChanged(ValueError):
    """A rerun's config differs from the one its workdir's checkpoints were made with."""


class WorkdirLocked(RuntimeError):
    """Another live trainer holds the workdir."""


# ------------------------------------------------------------------------------ config record


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf} of nested dicts (lists are leaves)."""
    if isinstance(tree, Mapping) and tree:
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_diff(old: Mapping, new: Mapping) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old value, new value)} of the keys that differ ("<absent>" if missing)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b))
            if a.get(k, "<absent>") != b.get(k, "<absent>")}


def _resumable(key: str) -> bool:
    return any(key == p.rstrip(".") or (p.endswith(".") and key.startswith(p))
               for p in RESUMABLE_KEYS)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_diff(diff: Mapping[str, tuple[Any, Any]], shown: int = 4) -> str:
    """"N keys: k: old -> new; ...; and k2, k3" with the model's keys first."""
    keys = sorted(diff, key=lambda k: (not k.startswith("model."), k))
    head = "; ".join(f"{k}: {_short(diff[k][0])} -> {_short(diff[k][1])}" for k in keys[:shown])
    rest = keys[shown:]
    tail = f"; and {', '.join(rest[:8])}{' ...' if len(rest) > 8 else ''}" if rest else ""
    return f"{len(keys)} differing keys: {head}{tail}"


def config_json(config) -> str:
    return config.to_json_best_effort(indent=2)


def check_config(config, workdir: str | os.PathLike) -> dict[str, tuple[Any, Any]]:
    """Compare `config` with the workdir's record before the run touches anything.

    Returns the differing keys (empty for a fresh workdir or an equal config). Raises
    ConfigChanged (listing every differing key that is not in RESUMABLE_KEYS) unless the config
    sets `allow_config_change`, or when the record is not valid JSON (naming the file).
    """
    path = pathlib.Path(workdir) / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigChanged(f"{path}: the run's recorded config is not valid JSON ({e}); restore "
                            f"it or move it away to start the workdir's record afresh") from None
    diff = config_diff(old, json.loads(config_json(config)))
    # A key absent from the record was added to the config schema after the run was recorded
    # (its default keeps the old behaviour, e.g. `xla.*`, `model.scan_layers`): not a change.
    added = sorted(k for k, (was, _) in diff.items() if was == "<absent>")
    if added:
        logging.info("%s: keys new since this run was recorded: %s", path, ", ".join(added))
    refused = {k: v for k, v in diff.items() if not _resumable(k) and k not in added}
    if refused and not has_checkpoints(workdir):
        # Nothing was saved with the old config (e.g. it failed to compile): nothing to
        # protect; write_config keeps the old record beside.
        logging.warning("%s: config changed (%s); no checkpoint yet, so the new config is "
                        "used", path, describe_diff(refused))
        return diff
    if refused and not bool(config.get("allow_config_change", False)):
        raise ConfigChanged(
            f"{path}: this workdir's run was made with another config ({describe_diff(refused)})"
            f". Rerun with the recorded config, use a new --workdir, or pass "
            f"--config.allow_config_change=true to continue with the new one (the old record is "
            f"kept as config.<time>.json)")
    return diff


def has_checkpoints(workdir: str | os.PathLike) -> bool:
    """Whether `<workdir>/checkpoints` holds a step folder (a complete orbax step: its name
    is the step number; temporary folders carry a suffix)."""
    folder = pathlib.Path(workdir) / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() and p.is_dir() for p in folder.iterdir())


def write_config(config, workdir: str | os.PathLike,
                 diff: Mapping[str, tuple[Any, Any]] | None = None) -> pathlib.Path:
    """Record `config` as the run's config (call after a successful restore or a fresh start).

    When `diff` holds keys outside RESUMABLE_KEYS (an allowed change), the previous record is
    kept as `config.<UTC time>.json` first.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / CONFIG_NAME
    if diff and path.is_file():
        changed = [k for k in diff if not _resumable(k)]
        if changed:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            kept = workdir / f"config.{stamp}.json"
            path.replace(kept)
            logging.warning("config changed on keys %s (allow_config_change); the previous "
                            "record is kept as %s", ", ".join(changed), kept)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config_json(config))
    tmp.replace(path)  # atomic: a reader never sees half a config
    return path


# ----------------------------------------------------------------------------------- lock


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (/proc, Linux), None elsewhere / gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the parenthesised name


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    now = _start_time(pid)
    return start is None or now is None or now == start  # a reused pid has a later start


class WorkdirLock:
    """The exclusive lock of a workdir (see module docstring). Use as a context manager.

    Args:
      workdir: the run directory (created if absent).
      enabled: False on processes other than 0 of a job: acquire/release do nothing.
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self.enabled = enabled
        self.held = False

    def holder(self) -> dict | None:
        """The recorded holder ({host, pid, start, since}), None when unlocked; a lock file
        that is not valid JSON (a writer killed mid-write) reads as {} (stale)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return info if isinstance(info, dict) else {}

    def _describe(self, info: dict) -> str:
        return (f"pid {info.get('pid')} on host {info.get('host')!r} "
                f"(since {info.get('since', '?')})")

    def acquire(self) -> "WorkdirLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
              "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):  # a stale lock removed below: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue  # released meanwhile
                same_host = info.get("host") == me["host"]
                if info and not same_host:
                    raise WorkdirLocked(
                        f"{self.path}: workdir in use by {self._describe(info)}; one trainer per "
                        f"workdir. If that job is gone, delete {self.path}") from None
                if info and _alive(int(info.get("pid", -1)), info.get("start")):
                    raise WorkdirLocked(
                        f"{self.path}: workdir in use by {self._describe(info)}; one trainer per "
                        f"workdir (stop it, or use another --workdir)") from None
                logging.warning("%s: stale lock of %s (no such process); taking it over",
                                self.path, self._describe(info) if info else "an unreadable holder")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise WorkdirLocked(f"{self.path}: could not take the workdir lock (contended)")

    def release(self) -> None:
        if self.held:
            info = self.holder()
            if info and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
