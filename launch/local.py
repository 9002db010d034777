"""Runs N processes of a command on this machine as one multi-process JAX job (CPU devices).

    python -m launch.local --processes 2 --devices-per-process 4 [--port P] -- \\
        python -m vision_banana.train --config=vision_banana/configs/tiny.py --workdir=/tmp/run

Process i gets VB_COORDINATOR_ADDRESS=127.0.0.1:P, VB_NUM_PROCESSES=N, VB_PROCESS_ID=i,
JAX_PLATFORMS=cpu and XLA_FLAGS with --xla_force_host_platform_device_count=K, which
`launch.distributed.initialize()` turns into a real `jax.distributed` job with N*K devices and
gloo collectives: the same code path as a pod, on a laptop.

Every output line (stdout and stderr, merged) is prefixed with "[p{i}] "; carriage-return
progress bars (tqdm) are passed through per segment. SIGINT / SIGTERM sent to the launcher are
forwarded to every process. When one process exits non-zero or dies by a signal, the others
are sent SIGTERM, then SIGKILL after --grace-s seconds, because a peer blocked in a collective
would otherwise wait for the dead one until JAX's heartbeat timeout (100 s by default). The
launcher's exit status is then the failed process' status (128 + signal number for a signal)
and its last stderr line names the process and how it ended; 0 when all succeed. A signal
forwarded from the launcher (a preemption) gives the processes --stop-grace-s seconds to save
and exit before SIGKILL; when every one of them then exits 0 (the trainer saves a checkpoint
and stops cleanly), so does the launcher, otherwise it exits 128 + the signal. JAX traps
SIGTERM as a preemption notice and keeps running, so a JAX process stuck in a collective ends
at the SIGKILL: the job is over about --grace-s seconds after the first failure.

Start-up deadline (--join-timeout-s, default 180 s; 0 = none): every process still running must
have joined the job (`launch.distributed.initialize` returned; it reports through files in a
folder named by VB_JOIN_DIR) within that time. Otherwise the launcher names the processes that
never reached `initialize` (or, when all did, the ones still waiting in it), stops the job as
on a failure and exits 124. A process that exits before the deadline needs no join.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import BinaryIO

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")
_POLL_S = 0.05


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(base: Mapping[str, str], *, index: int, processes: int, port: int,
              devices_per_process: int) -> dict[str, str]:
    """Environment of process `index`: `base` plus the job variables (see module docstring).

    An existing --xla_force_host_platform_device_count in XLA_FLAGS is replaced, other XLA
    flags are kept.
    """
    xla_flags = _DEVICE_COUNT_FLAG.sub("", base.get("XLA_FLAGS", "")).split()
    xla_flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
    env = dict(base)
    env.update(
        VB_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        VB_NUM_PROCESSES=str(processes),
        VB_PROCESS_ID=str(index),
        XLA_FLAGS=" ".join(xla_flags),
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",  # live, line-by-line output through the pipe
    )
    return env


def describe_exit(returncode: int) -> str:
    """'exited with status 3' or 'was killed by signal SIGKILL (9)' for a Popen return code."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {name} ({-returncode})"


class LinePrefixer:
    """Splits a byte stream into lines (ending in \\n or \\r) and prefixes each one.

    Partial lines are held until their end arrives, so interleaved output of several processes
    never mixes within a line.
    """

    def __init__(self, prefix: bytes):
        self.prefix = prefix
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        self._pending = data[cut:]
        if not cut:
            return b""
        parts = re.split(rb"(?<=[\r\n])", data[:cut])
        # A bare \r (tqdm starts each redraw with one) needs no prefix of its own: the text
        # after it gets one, so the redrawn line still reads "[p0] train: 10%...".
        return b"".join(p if p == b"\r" else self.prefix + p for p in parts if p)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self.prefix + rest + b"\n" if rest else b""


class Job:
    """N child processes, their output pumps, and the stop logic (see module docstring)."""

    def __init__(self, command: Sequence[str], *, processes: int, devices_per_process: int,
                 port: int | None = None, grace_s: float = 10.0, stop_grace_s: float = 300.0,
                 join_timeout_s: float = 180.0, out: BinaryIO | None = None,
                 base_env: Mapping[str, str] | None = None):
        if processes < 1 or devices_per_process < 1:
            raise ValueError(f"--processes ({processes}) and --devices-per-process "
                             f"({devices_per_process}) must be >= 1")
        if not command:
            raise ValueError("no command given (put it after '--')")
        self.command = list(command)
        self.processes = processes
        self.devices_per_process = devices_per_process
        self.port = port or free_port()
        self.grace_s = grace_s
        self.stop_grace_s = stop_grace_s
        if join_timeout_s < 0:
            raise ValueError(f"--join-timeout-s ({join_timeout_s}) must be >= 0 (0 = no deadline)")
        self.join_timeout_s = join_timeout_s
        self._join_dir: str | None = None
        self.out = out if out is not None else sys.stdout.buffer
        self.base_env = dict(os.environ if base_env is None else base_env)
        self._lock = threading.Lock()
        self._children: list[subprocess.Popen] = []
        self._pumps: list[threading.Thread] = []
        self._signal: int | None = None

    # -- output
    def _write(self, data: bytes) -> None:
        if data:
            with self._lock:
                self.out.write(data)
                self.out.flush()

    def note(self, message: str) -> None:
        """A launcher message on stderr, kept whole among the children's lines."""
        with self._lock:
            self.out.flush()
            sys.stderr.write(f"[launch.local] {message}\n")
            sys.stderr.flush()

    def _pump(self, index: int, stream: BinaryIO) -> None:
        prefixer = LinePrefixer(f"[p{index}] ".encode())
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            self._write(prefixer.feed(chunk))
        self._write(prefixer.flush())
        stream.close()

    # -- processes
    def start(self) -> None:
        self.note(f"{self.processes} process(es) x {self.devices_per_process} CPU device(s), "
                  f"coordinator 127.0.0.1:{self.port}: {' '.join(self.command)}")
        self._join_dir = tempfile.mkdtemp(prefix="launch_local_join_")
        self._started = time.monotonic()
        for i in range(self.processes):
            env = child_env(self.base_env, index=i, processes=self.processes, port=self.port,
                            devices_per_process=self.devices_per_process)
            env["VB_JOIN_DIR"] = self._join_dir
            # Own session per child: a terminal's Ctrl-C reaches only the launcher, which
            # forwards it, and killpg reaches the child's own children (grain workers).
            child = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            self._children.append(child)
            pump = threading.Thread(target=self._pump, args=(i, child.stdout), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _signal_all(self, sig: int, only_running: bool = True) -> None:
        for child in self._children:
            if only_running and child.poll() is not None:
                continue
            try:
                os.killpg(child.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _not_joined(self, codes: list[int | None]) -> str | None:
        """After the join deadline: who is late ("process 1 (pid 123) never reached
        launch.distributed.initialize"), None when every running process joined."""
        def has(i: int, stage: str) -> bool:
            return os.path.exists(os.path.join(self._join_dir, f"{i}.{stage}"))

        late = [i for i, rc in enumerate(codes) if rc is None and not has(i, "joined")]
        if not late:
            return None
        absent = [i for i in late if not has(i, "arrived")]
        named = ", ".join(f"{i} (pid {self._children[i].pid})" for i in (absent or late))
        where = ("never reached launch.distributed.initialize" if absent else
                 "are still waiting in jax.distributed.initialize (a peer is missing?)")
        return f"process(es) {named} {where} {self.join_timeout_s:g} s after start"

    def _on_signal(self, signum, _frame) -> None:
        self._signal = signum

    def wait(self) -> int:
        """Waits for the job; returns the launcher's exit status (see module docstring)."""
        failed: tuple[int, int] | None = None   # (process index, return code)
        late: str | None = None                 # who did not join by the deadline
        interrupted: int | None = None
        deadline: float | None = None           # SIGKILL time once stopping
        killed = False
        while True:
            if self._signal is not None:
                sig, self._signal = self._signal, None
                if interrupted is None and failed is None:
                    interrupted = sig
                    self.note(f"got {signal.Signals(sig).name}; forwarding it to all processes")
                    self._signal_all(sig)
                    # Time to reach a step boundary and write a checkpoint.
                    deadline = time.monotonic() + self.stop_grace_s
                else:  # a second signal: stop now
                    self._signal_all(signal.SIGKILL)
                    killed = True
            codes = [child.poll() for child in self._children]
            if (late is None and failed is None and interrupted is None and self.join_timeout_s
                    and time.monotonic() - self._started > self.join_timeout_s):
                late = self._not_joined(codes)
                if late is not None:
                    self.note(f"{late}; stopping the job")
                    failed = (-1, 124)
                    self._signal_all(signal.SIGTERM)
                    deadline = time.monotonic() + self.grace_s
            if failed is None and interrupted is None:
                bad = [(i, rc) for i, rc in enumerate(codes) if rc not in (None, 0)]
                if bad:
                    failed = bad[0]
                    running = sum(rc is None for rc in codes)
                    self.note(f"process {failed[0]} (pid {self._children[failed[0]].pid}) "
                              f"{describe_exit(failed[1])}; "
                              f"terminating {running} other process(es)")
                    self._signal_all(signal.SIGTERM)
                    deadline = time.monotonic() + self.grace_s
            if all(rc is not None for rc in codes):
                break
            if deadline is not None and not killed and time.monotonic() > deadline:
                waited = self.stop_grace_s if failed is None else self.grace_s
                self.note(f"processes still running {waited:g} s after the stop signal; "
                          "sending SIGKILL")
                self._signal_all(signal.SIGKILL)
                killed = True
            time.sleep(_POLL_S)
        # Leaders are gone; stragglers in their groups (workers they forked) would keep the
        # output pipes open and outlive the job.
        self._signal_all(signal.SIGKILL, only_running=False)
        for pump in self._pumps:
            pump.join(timeout=5.0)
        if self._join_dir:
            shutil.rmtree(self._join_dir, ignore_errors=True)

        if late is not None:
            self.note(f"job failed: {late} (--join-timeout-s)")
            return 124
        if failed is not None:
            index, rc = failed
            self.note(f"job failed: process {index} {describe_exit(rc)}")
            return rc if rc > 0 else 128 - rc
        if interrupted is not None:
            name = signal.Signals(interrupted).name
            if all(child.returncode == 0 for child in self._children):
                self.note(f"job stopped on {name}: every process exited cleanly")
                return 0
            self.note(f"job interrupted by {name}")
            return 128 + interrupted
        self.note(f"all {self.processes} process(es) finished successfully")
        return 0

    def run(self) -> int:
        """start() + wait(), with SIGINT/SIGTERM forwarded while the job runs."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            try:
                self.start()
            except OSError as err:  # e.g. command not found: stop the ones already started
                self._signal_all(signal.SIGKILL)
                for child in self._children:
                    child.wait()
                self.note(f"cannot start {self.command[0]!r}: {err.strerror or err}")
                return 127
            return self.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Splits `argv` at the first '--' into launcher options and the command."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m launch.local",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", "-n", type=int, required=True, help="processes to start")
    parser.add_argument("--devices-per-process", "-k", type=int, default=1,
                        help="fake CPU devices per process (XLA host platform device count)")
    parser.add_argument("--port", type=int, default=None,
                        help="coordinator port on 127.0.0.1 (default: a free port)")
    parser.add_argument("--grace-s", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when one process failed and "
                             "the others are stopped")
    parser.add_argument("--stop-grace-s", type=float, default=300.0,
                        help="seconds the processes get to save and exit after a SIGINT / "
                             "SIGTERM forwarded from the launcher, before SIGKILL")
    parser.add_argument("--join-timeout-s", type=float, default=180.0,
                        help="seconds every process gets to join the job "
                             "(launch.distributed.initialize) before the launcher names the "
                             "missing ones and stops the job (0 = no deadline)")
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        parser.error("no command given: put it after '--'")
    return args, command


def main(argv: Sequence[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        job = Job(command, processes=args.processes, devices_per_process=args.devices_per_process,
                  port=args.port, grace_s=args.grace_s,
                  stop_grace_s=args.stop_grace_s, join_timeout_s=args.join_timeout_s)
    except ValueError as err:
        print(f"[launch.local] {err}", file=sys.stderr)
        return 2
    return job.run()


if __name__ == "__main__":
    sys.exit(main())
