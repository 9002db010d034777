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
import logging
import os
import pathlib
import re
import socket
import sys
import tempfile
import threading
import traceback

OUR_PACKAGES = ("vision_banana", "data_mix", "eval", "tasks", "launch", "baselines")
LOG_NAME = "error.log"
MAX_CHARS = 1000
_TENSORSTORE_OS_ERROR = re.compile(
    r'Failed (?:writing|reading|opening)[^"]*"(?P<path>[^"]+)".*?\[os_error_code=.(?P<code>\d+).\]')


def chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes / contexts, outermost first (cycles cut)."""
    out, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        out.append(error)
        # `raise ... from None` hides the context: the raiser said it is not the cause.
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
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
    for e in links:  # TensorStore's wording of an OS error (orbax array writes and reads)
        m = _TENSORSTORE_OS_ERROR.search(str(e))
        if m:
            code = int(m.group("code"))
            return f"OSError: [Errno {code}] {os.strerror(code)}: {m.group('path')}"
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


class _Divert(logging.Filter):
    """Sends ERROR records of other packages (orbax's background threads, asyncio's "Task
    exception was never retrieved") to the log file instead of stderr: each repeats, with a
    traceback, the failure that the command reports once when it stops."""

    def __init__(self, path: pathlib.Path):
        super().__init__()
        self.path = path
        self.formatter = logging.Formatter("%(asctime)s %(levelname)s %(pathname)s:%(lineno)d "
                                           "%(message)s")

    def filter(self, record: logging.LogRecord) -> bool:
        ours = any(f"/{p}/" in record.pathname for p in OUR_PACKAGES)
        if record.levelno < logging.ERROR or ours:
            return True
        try:
            with open(self.path, "a") as f:
                f.write(self.formatter.format(record) + "\n")
        except OSError:
            return True  # cannot keep it there: let stderr have it
        return False


def divert_background_errors(workdir: str | os.PathLike) -> None:
    """Route other packages' ERROR logs and tracebacks printed from background threads (as
    orbax / TensorStore callbacks print them) to `<workdir>/error.log` for this process."""
    path = pathlib.Path(workdir) / LOG_NAME
    handlers = list(logging.getLogger().handlers)
    try:
        from absl import logging as absl_logging

        handlers.append(absl_logging.get_absl_handler())
    except ImportError:
        pass
    divert = _Divert(path)
    for handler in handlers:
        handler.addFilter(divert)

    def to_log(exc_type, exc, tb) -> None:
        if write_log(exc, path, "background") is None:
            sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = to_log
    sys.unraisablehook = lambda u: to_log(u.exc_type, u.exc_value, u.exc_traceback)
    threading.excepthook = lambda args: to_log(args.exc_type, args.exc_value, args.exc_traceback)
