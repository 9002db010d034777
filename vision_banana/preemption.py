"""Preemption: stop every process of a job at the same step boundary when a signal arrives.

Cloud schedulers announce a preemption (spot / preemptible VMs, GKE node drains, SLURM
`--signal`) with SIGTERM a few seconds to minutes before the kill; Ctrl-C sends SIGINT. The
trainer asks `Watcher.should_stop()` once per step; when it answers True the trainer saves a
checkpoint at that step, stops, and raises `Preempted`; the CLI then exits with
`--preempted_exit_code` (0 by default). A restart resumes from that checkpoint.

The hard part is multi-process: a signal may reach one host, or reach the hosts while they are
at different steps (the host loops run ahead of the devices asynchronously), yet every process
must take the same number of steps, or the next collective hangs. Two ways to agree:

  jax        multi-process job with JAX's preemption service (the default since
             `jax.distributed.initialize` starts it). JAX traps SIGTERM in C++ and the
             coordination service spreads the notice to all processes out of band; each
             process passes its step counter to
             `multihost_utils.reached_preemption_sync_point`, and they all stop at
             (largest counter when the notice arrived) + 1. Costs nothing per step (no
             device collective). SIGINT is turned into SIGTERM to this process, so Ctrl-C takes
             the same path. SIGTERM must not get a Python handler here: it would replace JAX's.
  collective multi-process job without the preemption service
             (`jax_enable_preemption_service=False`): Python handlers set a flag, and every
             `sync_every` steps the processes all-gather their flags
             (`multihost_utils.process_allgather`, a host sync) and stop if any is set.
  local      one process: Python handlers set a flag, checked every step.

Counters are counted from the start of this run (1, 2, ...), not from the global step: every
process starts this loop at the same restored step, and JAX's sync point, computed from
counters that are 0 until the first call, is then reachable after a resume too.

A second SIGINT raises KeyboardInterrupt (stop now, no checkpoint). A signal before the
watcher is installed (model build, compile) acts as usual in one process (ends it); in a
multi-process job JAX has trapped SIGTERM since start-up, so the run stops after its first step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import jax
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped early at a step boundary on a preemption signal.

    Attributes:
      step: the completed update count saved in the checkpoint the run stopped at.
      reason: what stopped it (signal name, or JAX's preemption notice).
    """

    def __init__(self, step: int, reason: str):
        super().__init__(f"stopped at step {step} ({reason}); checkpoint saved, a restart "
                         f"resumes from it")
        self.step = step
        self.reason = reason


def _jax_service_available() -> bool:
    """True in a multi-process job whose JAX preemption service runs.

    The probe call passes counter 0, which is the service's own initial value, so it changes
    nothing; it raises RuntimeError when the service is disabled.
    """
    if jax.process_count() == 1:
        return False
    from jax.experimental import multihost_utils

    try:
        multihost_utils.reached_preemption_sync_point(0)
    except RuntimeError:
        return False
    return True


class Watcher:
    """Signals -> an agreed stop step. Use as a context manager around the training loop.

        with preemption.Watcher() as watcher:
            for step in ...:
                ...  # one update
                if watcher.should_stop():  # every process, once per step
                    ...  # save, then stop

    Args:
      sync_every: in `collective` mode, steps between flag exchanges (each one is a host sync
        of all processes); ignored otherwise.
      mode: "jax", "collective" or "local" (see module docstring); default: chosen from the
        process count and whether JAX's preemption service runs.
    """

    def __init__(self, *, sync_every: int = 1, mode: str | None = None):
        if sync_every < 1:
            raise ValueError(f"sync_every={sync_every} must be >= 1")
        self.sync_every = int(sync_every)
        self._mode = mode
        self.mode = ""
        self.calls = 0           # should_stop() calls so far: the agreed step counter
        self.received: str | None = None  # name of the first signal this process got
        self._previous: dict[int, object] = {}

    # -- handlers
    def __enter__(self) -> "Watcher":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def install(self) -> "Watcher":
        """Choose the mode and install the signal handlers (main thread only)."""
        if self._mode is None:
            if jax.process_count() == 1:
                self.mode = "local"
            else:
                self.mode = "jax" if _jax_service_available() else "collective"
        else:
            if self._mode not in ("jax", "collective", "local"):
                raise ValueError(f"mode={self._mode!r}; expected 'jax', 'collective' or 'local'")
            self.mode = self._mode
        if threading.current_thread() is not threading.main_thread():
            # Python delivers signals to the main thread only; a loop run elsewhere (a notebook
            # worker thread) keeps the default behaviour: SIGTERM ends it, SIGINT interrupts.
            logging.warning("preemption: not on the main thread; SIGTERM / SIGINT not handled")
            return self
        # JAX's C++ handler owns SIGTERM in `jax` mode (a Python handler would replace it).
        owned = (signal.SIGINT,) if self.mode == "jax" else SIGNALS
        for sig in owned:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        logging.info("preemption: %s mode; SIGTERM / SIGINT stop the run at a step boundary "
                     "with a checkpoint", self.mode)
        return self

    def uninstall(self) -> None:
        """Restore the handlers that were there before `install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if self.received is None:
            self.received = name
        # Not logging.*: the logging lock may be held by the interrupted frame.
        os.write(2, f"preemption: got {name}; stopping at the next step boundary with a "
                    f"checkpoint (Ctrl-C again to abort)\n".encode())
        if self.mode == "jax":
            # Hand the notice to JAX's service, which tells the other processes.
            os.kill(os.getpid(), signal.SIGTERM)

    # -- the per-step question
    def should_stop(self) -> bool:
        """Whether to stop after the step just taken; the same answer on every process.

        Call it exactly once per step, on every process, at the same point of the loop.
        """
        self.calls += 1
        if self.mode == "jax":
            from jax.experimental import multihost_utils

            return bool(multihost_utils.reached_preemption_sync_point(self.calls))
        if self.mode == "collective":
            if self.calls % self.sync_every:
                return False
            from jax.experimental import multihost_utils

            flags = multihost_utils.process_allgather(np.int32(self.received is not None))
            return bool(np.max(flags))
        return self.received is not None

    @property
    def reason(self) -> str:
        """Why the run stops, for logs and `Preempted`."""
        if self.received is not None:
            return self.received
        # In `jax` mode SIGTERM is caught by JAX, so this process cannot tell whether it or a
        # peer got it.
        return "preemption notice (SIGTERM to a process of the job)"
