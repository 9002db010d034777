"""Resume is exact: a restarted run (even one killed with SIGKILL) continues bit-identically."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vision_banana import checkpoint, metrics_io, optim, sharding, train
from vision_banana.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(cache, steps):
    c = tiny.get_config("runlocal=1")
    c.mesh.num_devices = 1
    c.train.steps = steps
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.compilation_cache_dir = str(cache)
    assert c.optim.decay_steps == 20  # runlocal: runs of any length share the schedule
    return c


def _restore(workdir, config, step):
    """{params, opt_state, ema} of checkpoint `step` as numpy, and its data iterator state."""
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    tx = optim.make_optimizer(config.optim, optim.decay_horizon(config))
    _, abstract, shardings, _ = train.abstract_state(config, tx, mesh, rules)
    parts = {k: abstract[k] for k in ("params", "opt_state", "ema")}
    parts = sharding.abstract_with_shardings(parts, {k: shardings[k] for k in parts})
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    restored, data_state = ckpt.restore(step, parts)
    ckpt.close()
    return jax.tree.map(np.asarray, restored), data_state


def _assert_bitwise_equal(a, b):
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        assert np.array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8)), \
            jax.tree_util.keystr(path)


def _losses(workdir):
    """step -> loss, the last record of each step winning (a killed run may log past its
    last checkpoint; the resumed run logs those steps again)."""
    return {r["step"]: r["loss"] for r in metrics_io.read_jsonl(workdir / "metrics.jsonl")
            if "loss" in r}


@pytest.mark.slow
def test_resume_in_process_is_bitwise(tmp_path, xla_cache):
    """4 steps straight == 2 steps, stop, resume to 4 (params, optimizer, EMA, data order)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(_config(xla_cache, 4), straight)
    train.train_and_evaluate(_config(xla_cache, 2), split)
    assert checkpoint.Checkpointer(split, read_only=True).latest_step() == 2
    train.train_and_evaluate(_config(xla_cache, 4), split)

    config = _config(xla_cache, 4)
    a, data_a = _restore(straight, config, 4)
    b, data_b = _restore(split, config, 4)
    _assert_bitwise_equal(a, b)
    assert data_a == data_b and data_a["next_batch"] == 4
    assert _losses(straight) == _losses(split)


def _cli(workdir, cache, steps, *extra):
    return [sys.executable, "-m", "vision_banana.train",
            f"--config={REPO}/vision_banana/configs/tiny.py:runlocal=1",
            f"--workdir={workdir}", f"--config.train.steps={steps}",
            "--config.train.checkpoint_every=10", "--config.train.log_every=1",
            "--config.mesh.num_devices=1",
            f"--config.train.compilation_cache_dir={cache}", *extra]


def _run(cmd, env):
    done = subprocess.run(cmd, env=env, cwd=REPO, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise(tmp_path, xla_cache):
    """20 steps straight == 10 steps + SIGKILL (mid-run) + resume to 20 (the last two through
    the CLI, each in its own process)."""
    env = dict(os.environ)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    c = _config(xla_cache, 20)
    c.train.checkpoint_every = 10  # as _cli
    train.train_and_evaluate(c, straight)

    # A long run (1000 steps, same schedule) killed as soon as its step-10 checkpoint is
    # committed: it dies mid-training, possibly mid-way through writing a later checkpoint.
    proc = subprocess.Popen(_cli(killed, xla_cache, 1000), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not (killed / "checkpoints" / "10").is_dir():
            assert proc.poll() is None, "training subprocess exited before its checkpoint"
            assert time.monotonic() < deadline, "no step-10 checkpoint within 300 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.Checkpointer(killed, read_only=True).latest_step() == 10

    _run(_cli(killed, xla_cache, 20), env)

    config = _config(xla_cache, 20)
    a, data_a = _restore(straight, config, 20)
    b, data_b = _restore(killed, config, 20)
    _assert_bitwise_equal(a, b)
    assert data_a == data_b and data_a["next_batch"] == 20
    losses_a, losses_b = _losses(straight), _losses(killed)
    assert sorted(losses_a) == list(range(1, 21))
    assert all(losses_a[s] == losses_b[s] for s in range(1, 21))  # same batches, same order
    # The second process really resumed: it logged its compile time at step 10, not 0.
    starts = [r["step"] for r in metrics_io.read_jsonl(killed / "metrics.jsonl")
              if "compile_s" in r]
    assert starts == [0, 10]
