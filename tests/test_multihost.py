"""Multi-process training is correct: real jobs of 1 x 8 and 2 x 4 CPU devices (launch.local).

Four shared jobs (module fixtures; tiny runlocal config, global batch 8, log every step, one
compilation cache), chained so that each claim is checked on a job of its own:
  one          1 process x 8 devices, 0 -> 10, checkpoints at 5 and 10 (the reference)
  two          2 processes x 4 devices, 0 -> 10 straight
  one_to_two   2 x 4 resumes `one`'s step-5 checkpoint (written by 1 process); SIGTERM goes
               to process 1 only once step 6 is logged: both stop at one step k with a
               checkpoint (written by 2 processes)
  two_to_one   1 x 8 resumes that step-k checkpoint to 10
Per-step loss and parameter differences are printed (run with `-s` to see them).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vision_banana import checkpoint, metrics_io, optim, preemption, sharding, train
from vision_banana.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, EVERY, BATCH = 10, 5, 8
# Cross-process all-reduces (gloo) may sum in another order than one process does.
RTOL, ATOL = 1e-5, 1e-6


# ------------------------------------------------------------------------------ job helpers


def _train_cmd(workdir, cache_dir, every=EVERY):
    return [sys.executable, "-m", "vision_banana.train",
            f"--config={REPO}/vision_banana/configs/tiny.py:runlocal=1",
            f"--workdir={workdir}", f"--config.train.steps={STEPS}",
            f"--config.train.global_batch_size={BATCH}",
            f"--config.train.checkpoint_every={every}", "--config.train.log_every=1",
            f"--config.train.compilation_cache_dir={cache_dir}"]


def _job_cmd(processes, devices, command):
    # --grace-s: a forwarded stop must leave time for the checkpoint save.
    return [sys.executable, "-m", "launch.local", "--processes", str(processes),
            "--devices-per-process", str(devices), "--grace-s", "120", "--", *command]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = str(REPO)
    # Orbax slices each replicated array with its own small jit program on save; caching
    # those too (default: only compiles over 1 s) saves ~10-20 s per job after the first.
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _launch(processes, devices, workdir, cache_dir, log, every=EVERY):
    """Run a job to completion; returns its merged output (asserting exit status 0)."""
    with open(log, "wb") as out:
        done = subprocess.run(_job_cmd(processes, devices, _train_cmd(workdir, cache_dir, every)),
                              cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                              timeout=600)
    text = pathlib.Path(log).read_text(errors="replace")
    assert done.returncode == 0, f"job failed ({done.returncode}); see {log}:\n{text[-4000:]}"
    return text


def _copy_checkpoint(src_workdir, step, dst_workdir):
    """A new run directory holding only checkpoint `step` of `src_workdir`."""
    target = dst_workdir / "checkpoints" / str(step)
    shutil.copytree(src_workdir / "checkpoints" / str(step), target)
    return dst_workdir


def _children(pid):
    """{VB_PROCESS_ID: pid} of the launcher's child processes (read from /proc)."""
    out = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for item in env:
            if item.startswith(b"VB_PROCESS_ID="):
                out[int(item.split(b"=", 1)[1])] = int(entry.name)
    return out


def _losses(workdir):
    """step -> loss; a step logged twice (before a stop and after the resume) keeps the last."""
    return {r["step"]: r["loss"] for r in metrics_io.read_jsonl(workdir / "metrics.jsonl")
            if "loss" in r}


def _config():
    c = tiny.get_config("runlocal=1")
    c.train.steps = STEPS
    c.train.global_batch_size = BATCH
    return c


def _restore(workdir, step):
    """{params, opt_state, ema} of checkpoint `step` as numpy, and this process's data state."""
    config = _config()
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    tx = optim.make_optimizer(config.optim, optim.decay_horizon(config))
    _, abstract, shardings, _ = train.abstract_state(config, tx, mesh, rules)
    parts = {k: abstract[k] for k in ("params", "opt_state", "ema")}
    parts = sharding.abstract_with_shardings(parts, {k: shardings[k] for k in parts})
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    try:
        restored, data_state = ckpt.restore(step, parts)
    finally:
        ckpt.close()
    return jax.tree.map(np.asarray, restored), data_state


def _max_diff(a, b):
    """(max abs diff, max rel diff) over every leaf of two equal-structured trees."""
    abs_d, rel_d = 0.0, 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        d = np.abs(x - y)
        abs_d = max(abs_d, float(d.max(initial=0.0)))
        rel_d = max(rel_d, float((d / np.maximum(np.abs(y), 1e-12)).max(initial=0.0)))
    return abs_d, rel_d


def _compare_losses(name, got, want, steps):
    a = np.array([got[s] for s in steps])
    b = np.array([want[s] for s in steps])
    abs_d = float(np.max(np.abs(a - b)))
    rel_d = float(np.max(np.abs(a - b) / np.abs(b)))
    print(f"\n[{name}] steps {steps[0]}..{steps[-1]}: max |loss diff| {abs_d:.3g}, "
          f"max rel {rel_d:.3g}")
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)


# ------------------------------------------------------------------------------ the runs


@pytest.fixture(scope="module")
def one(tmp_path_factory, xla_cache):
    workdir = tmp_path_factory.mktemp("one") / "run"
    _launch(1, 8, workdir, xla_cache, workdir.parent / "job.log")
    return workdir


@pytest.fixture(scope="module")
def two(tmp_path_factory, xla_cache):
    workdir = tmp_path_factory.mktemp("two") / "run"
    _launch(2, 4, workdir, xla_cache, workdir.parent / "job.log", every=STEPS)
    return workdir


@pytest.fixture(scope="module")
def one_to_two(one, tmp_path_factory, xla_cache):
    """2 x 4 job resuming `one` at 5; SIGTERM to process 1 only once step 6 is logged.

    Returns {workdir, output, rc (launcher exit status), stop (the step checkpointed at the
    stop, read before anything else writes), data_files (of that checkpoint)}.
    """
    workdir = _copy_checkpoint(one, EVERY, tmp_path_factory.mktemp("one_to_two") / "run")
    log = workdir.parent / "job.log"
    with open(log, "wb") as out:
        job = subprocess.Popen(_job_cmd(2, 4, _train_cmd(workdir, xla_cache)), cwd=REPO,
                               env=_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 400
            metrics = workdir / "metrics.jsonl"
            while max(_losses(workdir) if metrics.exists() else {}, default=0) < 6:
                assert job.poll() is None, log.read_text(errors="replace")[-4000:]
                assert time.monotonic() < deadline, "no step 6 within 400 s"
                time.sleep(0.05)
            os.kill(_children(job.pid)[1], signal.SIGTERM)
            rc = job.wait(timeout=300)
        finally:
            if job.poll() is None:  # a failed wait: end the training processes, then the launcher
                for pid in _children(job.pid).values():
                    os.kill(pid, signal.SIGKILL)
                job.kill()
                job.wait()
    stop = checkpoint.Checkpointer(workdir, read_only=True).latest_step()
    data = workdir / "checkpoints" / str(stop) / "data"
    return {"workdir": workdir, "output": log.read_text(errors="replace"), "rc": rc,
            "stop": stop, "data_files": sorted(p.name for p in data.glob("process_*.json"))}


@pytest.fixture(scope="module")
def two_to_one(one_to_two, tmp_path_factory, xla_cache):
    stop = one_to_two["stop"]
    workdir = _copy_checkpoint(one_to_two["workdir"], stop,
                               tmp_path_factory.mktemp("two_to_one") / "run")
    _launch(1, 8, workdir, xla_cache, workdir.parent / "job.log")
    return workdir, stop


# ------------------------------------------------------------------------------ tests


def _assert_state_close(name, workdir, reference, step=STEPS):
    a, data_a = _restore(reference, step)
    b, data_b = _restore(workdir, step)
    abs_d, rel_d = _max_diff(b, a)
    print(f"[{name}] params/opt_state/ema at step {step}: max |diff| {abs_d:.3g}, "
          f"max rel {rel_d:.3g}")
    for x, y in zip(jax.tree.leaves(b), jax.tree.leaves(a)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=name)
    assert data_a["next_example"] == data_b["next_example"] == step * BATCH


@pytest.mark.slow
def test_two_processes_train_like_one(one, two):
    """2 x 4 devices and 1 x 8 devices: the same loss at every step (same global batches)."""
    losses_one, losses_two = _losses(one), _losses(two)
    assert sorted(losses_one) == sorted(losses_two) == list(range(1, STEPS + 1))
    _compare_losses("2x4 vs 1x8", losses_two, losses_one, list(range(1, STEPS + 1)))
    _assert_state_close("2x4 vs 1x8", two, one)


@pytest.mark.slow
def test_checkpoint_of_one_process_restores_in_two(one, one_to_two):
    workdir, stop = one_to_two["workdir"], one_to_two["stop"]
    losses = _losses(workdir)
    assert min(losses) == EVERY + 1  # it resumed at 5
    _compare_losses("1 -> 2 processes, resumed at 5", losses, _losses(one),
                    list(range(EVERY + 1, stop + 1)))


@pytest.mark.slow
def test_sigterm_stops_every_process_at_one_step_with_a_checkpoint(one_to_two):
    output, stop = one_to_two["output"], one_to_two["stop"]
    assert one_to_two["rc"] == 0, output[-4000:]  # launch.local: 0 = every process exited 0
    stops = {}
    for line in output.splitlines():
        if "stopping at step" in line and line.startswith("[p"):
            stops[line[2]] = int(line.split("stopping at step ")[1].split()[0])
    assert set(stops) == {"0", "1"}, output[-4000:]
    assert stops["0"] == stops["1"] == stop, (stops, stop)
    assert 6 <= stop < STEPS
    assert one_to_two["data_files"] == ["process_0-of-2.json", "process_1-of-2.json"]
    assert "Traceback" not in output
    assert max(_losses(one_to_two["workdir"])) == stop  # no step after the stop ran
    print(f"\n[SIGTERM to process 1 after step 6 was logged] both processes stopped at "
          f"step {stop}, checkpoint {stop} written by 2 processes")


@pytest.mark.slow
def test_checkpoint_of_two_processes_restores_in_one_and_matches_uninterrupted(one, two_to_one):
    """The SIGTERM checkpoint (2 processes) resumed by 1 process: the uninterrupted run's
    losses and final state."""
    workdir, stop = two_to_one
    losses = _losses(workdir)
    assert sorted(losses) == list(range(stop + 1, STEPS + 1))
    _compare_losses(f"2 -> 1 process, resumed at {stop}", losses, _losses(one),
                    list(range(stop + 1, STEPS + 1)))
    _assert_state_close("1 -> 2 -> 1 processes vs 1x8", workdir, one)


@pytest.mark.slow
def test_restored_iterators_continue_at_the_same_global_examples(one_to_two):
    """The 2-process data states of a checkpoint, restored by 1 process (derived state) and by
    2 processes (own files): the next global batch is the same examples in the same order."""
    from data_mix.iterator import make_iterator
    from data_mix.mixture import Mixture

    first = one_to_two["stop"]
    config = _config()
    tokenizer = train.abstract_state(
        config, optim.make_optimizer(config.optim, 20),
        sharding.make_mesh(config), sharding.rules_from_config(config))[3]
    folder = one_to_two["workdir"] / "checkpoints" / str(first) / "data"
    written = [json.loads((folder / f"process_{i}-of-2.json").read_text()) for i in range(2)]
    derived = checkpoint.reshard_data_states(written, 0, 1)
    assert derived["next_example"] == first * BATCH
    assert derived["records_read"] == sum(s["records_read"] for s in written)

    def next_batch(state, index, count):
        it = make_iterator(Mixture(config.data), global_batch_size=BATCH, process_index=index,
                           process_count=count, tokenize=tokenizer,
                           task_names=list(config.tasks))
        try:
            it.set_state(state)
            batch = next(it)
            return [m["global_index"] for m in it.last_meta], batch
        finally:
            it.close()

    one_ids, one_batch = next_batch(derived, 0, 1)
    parts = [next_batch(written[i], i, 2) for i in range(2)]
    two_ids = parts[0][0] + parts[1][0]
    assert one_ids == two_ids == list(range(first * BATCH, (first + 1) * BATCH))
    for key in one_batch:
        np.testing.assert_array_equal(
            one_batch[key], np.concatenate([parts[0][1][key], parts[1][1][key]]), err_msg=key)


# ------------------------------------------------------------------------------ fast checks


def test_reshard_data_states_keeps_the_global_position_and_the_counter_totals():
    states = [{"next_batch": 7, "global_batch_size": 8, "next_example": 56, "seed": 3,
               "records_read": 29, "bad_records": 1},
              {"next_batch": 7, "global_batch_size": 8, "next_example": 56, "seed": 3,
               "records_read": 28, "bad_records": 2}]
    merged = [checkpoint.reshard_data_states(states, i, 3) for i in range(3)]
    for m in merged:
        assert {k: m[k] for k in ("next_batch", "next_example", "seed")} == \
            {"next_batch": 7, "next_example": 56, "seed": 3}
    assert [m["records_read"] for m in merged] == [19, 19, 19]
    assert [m["bad_records"] for m in merged] == [1, 1, 1]
    assert checkpoint.reshard_data_states(states, 0, 1)["records_read"] == 57

    bad = [states[0], {**states[1], "next_example": 64}]
    with pytest.raises(ValueError, match="next_example=64"):
        checkpoint.reshard_data_states(bad, 0, 1, where="ckpt/7/data")
    with pytest.raises(ValueError, match="bytes"):
        checkpoint.reshard_data_states([b"{}", b"{}"], 0, 1)


def test_data_state_handler_derives_a_missing_process_state(tmp_path):
    from etils import epath

    handler = checkpoint.DataStateHandler()
    folder = epath.Path(tmp_path)
    for i in range(3):  # a 3-process job wrote these; this test process is 1 of 1
        (folder / f"process_{i}-of-3.json").write_text(json.dumps(
            {"next_batch": 2, "global_batch_size": 6, "next_example": 12, "seed": 0,
             "records_read": 4, "bad_records": 0}))
    state = handler.restore(folder)
    assert state["next_example"] == 12 and state["records_read"] == 12

    (folder / "process_1-of-3.json").unlink()  # incomplete set: nothing to derive from
    with pytest.raises(FileNotFoundError, match=r"process_0-of-1\.json.*process_0-of-3"):
        handler.restore(folder)


def test_watcher_in_one_process_stops_on_sigterm_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with preemption.Watcher() as watcher:
        assert watcher.mode == "local"
        assert not watcher.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while watcher.received is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert watcher.should_stop() and watcher.reason == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


_AGREE_SCRIPT = """
import os, signal, sys, time
from launch import distributed
distributed.initialize()
import jax, numpy as np
from jax.experimental import multihost_utils
from vision_banana import preemption
with preemption.Watcher(mode=sys.argv[1]) as watcher:
    for step in range(1, 200):
        multihost_utils.process_allgather(np.int32(step))  # a collective per step, as training
        if jax.process_index() == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # only this process is told
        if jax.process_index() == 0:
            time.sleep(0.05)  # process 0 lags, so the processes are at different steps
        if watcher.should_stop():
            print(f"STOP {jax.process_index()} {step} {watcher.mode}", flush=True)
            break
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["jax", "collective"])
def test_watchers_of_a_job_agree_on_the_stop_step(tmp_path, mode):
    """SIGTERM to process 1 only: both processes of a real 2-process job stop at one step."""
    script = tmp_path / "agree.py"
    script.write_text(_AGREE_SCRIPT)
    done = subprocess.run(_job_cmd(2, 1, [sys.executable, str(script), mode]), cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    stops = sorted(line.split("STOP ")[1] for line in out.splitlines() if "STOP " in line)
    assert len(stops) == 2, out[-4000:]
    (p0, s0, m0), (p1, s1, m1) = (s.split() for s in stops)
    assert (p0, p1) == ("0", "1") and s0 == s1 and m0 == m1 == mode
    print(f"\n[{mode}] SIGTERM to process 1 at step 3: both stopped at step {s0}")
