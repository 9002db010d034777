"""Per-process batches of a `Mixture`: the iterator the trainer and evaluators consume.

Process p of P gets, for global batch b of size G, the examples [b*G + p*G/P, b*G + (p+1)*G/P)
of the mixture (docs/contracts.md "Batches"), so the processes together see exactly the
single-process global batch whatever P and the worker count. The state (`get_state`) is the next
global example, the same on every process, so a run resumes at the same example with another
process or worker count.

    it = make_iterator(mixture, global_batch_size=32, process_index=0, process_count=1,
                       tokenize=tok, task_names=["depth", "semantic"])
    batch = next(it)  # {image uint8 (B,H,W,3), has_image bool (B,), target uint8 (B,H,W,3),
                      #  tokens int32 (B,L), task_id int32 (B,)}, B = G / P

Examples are made in grain worker processes (`num_workers`) or threads; tokenizing and the
bad-record accounting happen in this process. Worker processes end themselves when the process
that started them dies, even by SIGKILL (`die_with_parent`), so a killed trainer leaves none.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import TYPE_CHECKING, Callable

import grain
import numpy as np

if TYPE_CHECKING:  # only annotations: `mixture` re-exports this module's names
    from data_mix.mixture import Mixture

_NO_END = 2 ** 62  # batches are counted, never exhausted: the mixture repeats every source


def make_iterator(mixture: Mixture, *, global_batch_size: int, process_index: int, process_count: int,
                  tokenize: Callable[[list[str]], np.ndarray], task_names: list[str], start_batch: int = 0,
                  num_workers: int = 0, read_threads: int = 2, prefetch_batches: int = 2) -> "MixtureIterator":
    """This process's iterator over local batches (docs/contracts.md "Batches").

    Process p of P gets, for global batch b of size G, the examples [b*G + p*G/P, b*G + (p+1)*G/P)
    of the mixture, so the processes together see exactly the single-process global batch.

    Args:
      tokenize: prompts -> int32 (B, L) tokens, 0 = padding; runs in this process (tokenizers
        need not pickle into workers).
      task_names: the config's task list; `task_id` indexes it.
      start_batch: first global batch to yield (resume; `get_state` records it).
      num_workers: grain worker processes (`mp_prefetch`); 0 builds batches in this process with
        `read_threads` threads. The output does not depend on either.
    """
    return MixtureIterator(mixture, global_batch_size=global_batch_size, process_index=process_index,
                           process_count=process_count, tokenize=tokenize, task_names=list(task_names),
                           start_batch=start_batch, num_workers=num_workers, read_threads=read_threads,
                           prefetch_batches=prefetch_batches)


PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # reparented: the parent died; nothing of this worker is worth keeping


def die_with_parent(parent_pid: int, worker_index: int = 0, worker_count: int = 1) -> None:
    """grain `worker_init_fn`: end this worker once `parent_pid` (the process that started it)
    is gone, within PARENT_POLL_S.

    A daemon thread watches `os.getppid()`, which changes the moment the parent dies (the
    worker is reparented) even while the dead parent is still an unreaped zombie. Not
    prctl(PR_SET_PDEATHSIG): that fires when the parent *thread* that forked the worker exits,
    which would kill workers started from a short-lived thread.
    """
    del worker_index, worker_count
    if os.getppid() != parent_pid:  # the parent died while this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="die_with_parent").start()


class _LocalBatch:
    """Global batch b -> this process's slice, collated (runs in grain workers)."""

    def __init__(self, mixture: Mixture, global_batch_size: int, process_index: int, process_count: int):
        self.mixture = mixture
        self.local = global_batch_size // process_count
        self.offset = process_index * self.local
        self.global_batch_size = global_batch_size

    def __call__(self, batch_index: int) -> dict:
        start = int(batch_index) * self.global_batch_size + self.offset
        made = [self.mixture.example_with_report(g) for g in range(start, start + self.local)]
        examples = [e for e, _ in made]
        h, w = self.mixture.resolution
        has_image = np.array([e.get("image") is not None for e in examples])
        image = np.zeros((len(examples), h, w, 3), np.uint8)
        for i, e in enumerate(examples):
            if has_image[i]:
                image[i] = e["image"]
        return {
            "image": image,
            "has_image": has_image,
            "target": np.stack([e["target"] for e in examples]),
            "prompts": [e["prompt"] for e in examples],
            "tasks": [e["task"] for e in examples],
            "meta": [e["meta"] for e in examples],
            "bad": [b for _, bad in made for b in bad],
            "batch_index": int(batch_index),
        }


class MixtureIterator(grain.DatasetIterator):
    """Yields local batches {image, has_image, target, tokens, task_id} (numpy, fixed shapes).

    State (`get_state`, JSON-able, what orbax / `grain.checkpoint` save): the next global batch
    and example index, plus bad-record counters. It is the same on every process, so a run may
    resume with another process count or worker count and continue at the same global example.
    `last_prompts`, `last_tasks`, `last_meta` describe the batch just returned (for logging).
    """

    def __init__(self, mixture: Mixture, *, global_batch_size: int, process_index: int, process_count: int,
                 tokenize: Callable, task_names: list[str], start_batch: int, num_workers: int,
                 read_threads: int, prefetch_batches: int):
        super().__init__()
        self._it = None  # set first: close() (also run by __del__) must work if validation fails
        if global_batch_size <= 0 or global_batch_size % process_count:
            raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                             f"process_count={process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} not in [0, {process_count})")
        missing = sorted(set(mixture.tasks) - set(task_names))
        if missing:
            raise ValueError(f"mixture tasks {missing} are not in task_names={task_names}")
        self.mixture = mixture
        self.global_batch_size = global_batch_size
        self.process_index, self.process_count = process_index, process_count
        self.tokenize = tokenize
        self.task_names = list(task_names)
        self.num_workers, self.read_threads, self.prefetch_batches = num_workers, read_threads, prefetch_batches
        self.next_batch = int(start_batch)
        self.records_read = 0
        self.bad_records = 0
        self.last_prompts: list[str] = []
        self.last_tasks: list[str] = []
        self.last_meta: list[dict] = []

    def _pipeline(self):
        ds = grain.MapDataset.range(self.next_batch, _NO_END).map(
            _LocalBatch(self.mixture, self.global_batch_size, self.process_index, self.process_count))
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.read_threads,
                                                  prefetch_buffer_size=self.prefetch_batches))
        if self.num_workers > 0:
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                             per_worker_buffer_size=self.prefetch_batches),
                                worker_init_fn=functools.partial(die_with_parent, os.getpid()))
        return iter(it)

    def start_prefetch(self) -> None:
        if self._it is None:
            self._it = self._pipeline()

    def __next__(self) -> dict:
        self._assert_not_closed()
        self.start_prefetch()
        item = next(self._it)
        if item["batch_index"] != self.next_batch:  # guards the resume arithmetic
            raise RuntimeError(f"data pipeline returned batch {item['batch_index']}, expected {self.next_batch}")
        self.records_read += len(item["prompts"]) + len(item["bad"])
        self.bad_records += len(item["bad"])
        self.mixture.check_bad(self.bad_records, self.records_read, item["bad"])
        tokens = np.asarray(self.tokenize(item["prompts"]))
        if tokens.ndim != 2 or tokens.shape[0] != len(item["prompts"]) or tokens.dtype.kind not in "iu":
            raise ValueError(f"tokenize returned {tokens.dtype} {tokens.shape}; expected int (B, L) with "
                             f"B={len(item['prompts'])}")
        unknown = sorted(set(item["tasks"]) - set(self.task_names))
        if unknown:
            raise ValueError(f"examples of tasks {unknown} not in task_names={self.task_names}")
        self.last_prompts, self.last_tasks, self.last_meta = item["prompts"], item["tasks"], item["meta"]
        self.next_batch += 1
        return {
            "image": item["image"],
            "has_image": item["has_image"],
            "target": item["target"],
            "tokens": tokens.astype(np.int32),
            "task_id": np.array([self.task_names.index(t) for t in item["tasks"]], np.int32),
        }

    def get_state(self) -> dict:
        return {"next_batch": self.next_batch, "global_batch_size": self.global_batch_size,
                "next_example": self.next_batch * self.global_batch_size, "seed": self.mixture.seed,
                "records_read": self.records_read, "bad_records": self.bad_records}

    def set_state(self, state: dict) -> None:
        """Continues at `state["next_example"]` (the global position), whatever the process count."""
        next_example = int(state["next_example"])
        if next_example % self.global_batch_size:
            raise ValueError(f"saved position {next_example} (batch {state.get('next_batch')} of "
                             f"{state.get('global_batch_size')}) is not a multiple of "
                             f"global_batch_size={self.global_batch_size}")
        if int(state.get("seed", self.mixture.seed)) != self.mixture.seed:
            raise ValueError(f"state was saved with mixture seed {state['seed']}, this mixture has "
                             f"{self.mixture.seed}")
        self.close_pipeline()
        self.next_batch = next_example // self.global_batch_size
        self.records_read = int(state.get("records_read", 0))
        self.bad_records = int(state.get("bad_records", 0))

    def close_pipeline(self) -> None:
        """Stops workers; the next `__next__` starts a new pipeline at `next_batch`."""
        if self._it is not None:
            self._it.close()
            self._it = None

    def close(self) -> None:
        self.close_pipeline()
        super().close()
