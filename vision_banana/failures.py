"""Errors of a command as one line on stderr, the full traceback in a log file.

An exception out of orbax's async writer or a jax call arrives as a chain of hundreds of lines
(asyncio frames, TensorStore specs) whose one useful line (e.g. `[Errno 28] No space left on
device: '.../checkpoints/40.orbax-checkpoint-tmp/...'`) is buried. `one_line` picks that
line; `report` writes the whole chain to `<workdir>/error.log` and returns the line to print.

Which link of the cause chain (`__cause__` / `__context__`, outermost first) speaks:
1. an OSError with an errno (disk full, permission, missing file): the system's words and the
   path, whatever wrapped it;
2. else the outermost exception when it is ours (raised by this project's packages, which
   name the file / key / value by convention);
3. else the innermost one (the original cause; the wrappers only repeat it).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import socket
import tempfile
import traceback

OUR_PACKAGES = ("vision_banana", "data_mix", "eval", "tasks", "launch", "baselines")
LOG_NAME = "error.log"
MAX_CHARS = 600


def chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes / contexts, outermost first (cycles cut)."""
    out, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        out.append(error)
        error = error.__cause__ or error.__context__
    return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > MAX_CHARS:
        line = line[:MAX_CHARS] + " ..."
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _ours(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in OUR_PACKAGES


def one_line(error: BaseException) -> str:
    """The one line that says what went wrong (see the module docstring)."""
    links = chain(error)
    for e in links:
        if isinstance(e, OSError) and e.errno is not None:
            where = f": {e.filename}" if e.filename else ""
            return f"{type(e).__name__}: [Errno {e.errno}] {e.strerror}{where}"
    if _ours(links[0]) or len(links) == 1:
        return _first_line(links[0])
    return _first_line(links[-1])


def write_log(error: BaseException, path: str | os.PathLike, command: str = "") -> pathlib.Path | None:
    """Append the full traceback to `path` (None when it cannot be written, e.g. a full disk)."""
    path = pathlib.Path(path)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    text = "".join(traceback.format_exception(error))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"==== {stamp} {command} pid {os.getpid()} on {socket.gethostname()}\n{text}\n")
    except OSError:
        return None
    return path


def report(error: BaseException, workdir: str | os.PathLike | None, command: str) -> str:
    """The line to print for `error`; its full traceback goes to `<workdir>/error.log`."""
    line = one_line(error)
    log = write_log(error, pathlib.Path(workdir) / LOG_NAME, command) if workdir else None
    if log is None:  # no workdir, or it cannot take a file (full disk): the temp folder
        log = write_log(error, pathlib.Path(tempfile.gettempdir()) / f"{command or 'vb'}-"
                        f"{os.getpid()}-{LOG_NAME}", command)
    return f"{line} (full traceback: {log})" if log else f"{line} (traceback not saved)"
