"""Fault injection on a real trainer (CLI subprocesses, tiny runlocal config, 16 steps):

- SIGKILL at random points of a checkpoint save, 5 times in a row (grain workers running);
- the latest checkpoint truncated (a torn array file);
- a full disk (a 12 MiB tmpfs: the step-2 checkpoint fits, the step-4 one does not);

after each, the run resumes from the last complete step and ends with exactly the state, the
losses and the data position of the uninterrupted run, and no process of a killed trainer
(grain workers included) is left behind.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from test_faults_train import truncate_largest_array_file
from test_resume import _assert_bitwise_equal, _config, _losses, _restore

from vision_banana import checkpoint, train

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 16


def _cli(workdir, cache, *extra):
    return [sys.executable, "-m", "vision_banana.train",
            f"--config={REPO}/vision_banana/configs/tiny.py:runlocal=1", f"--workdir={workdir}",
            f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=2",
            "--config.train.log_every=1", "--config.mesh.num_devices=1",
            f"--config.train.compilation_cache_dir={cache}", *extra]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, xla_cache):
    """The uninterrupted run (same schedule: runlocal fixes the decay horizon)."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    train.train_and_evaluate(_config(xla_cache, STEPS), workdir)
    return workdir


def _assert_same_run(straight, workdir, xla_cache):
    config = _config(xla_cache, STEPS)
    a, data_a = _restore(straight, config, STEPS)
    b, data_b = _restore(workdir, config, STEPS)
    _assert_bitwise_equal(a, b)
    assert data_a == data_b and data_a["next_batch"] == STEPS
    losses_a, losses_b = _losses(straight), _losses(workdir)
    assert sorted(losses_a) == list(range(1, STEPS + 1))
    assert all(losses_a[s] == losses_b[s] for s in losses_a)


def _tmp_of(ckpt_dir: pathlib.Path, step: int) -> list[pathlib.Path]:
    return list(ckpt_dir.glob(f"{step}.orbax-checkpoint-tmp*")) if ckpt_dir.is_dir() else []


def _wait_for(ckpt_dir: pathlib.Path, step: int, phase: str, proc, rng) -> None:
    """Block until the save of `step` reaches `phase`, plus a random delay within it:
    "start" (its temporary folder appeared), "arrays" (array data files are being written),
    "commit" (renamed to its final name: finalize / metadata writes follow)."""
    deadline = time.monotonic() + 300

    def reached() -> bool:
        tmp = _tmp_of(ckpt_dir, step)
        if phase == "start":
            return bool(tmp) or (ckpt_dir / str(step)).is_dir()
        if phase == "arrays":
            return any(p.is_file() for t in tmp for p in t.glob("*/ocdbt.process_0/d/*")) or (
                ckpt_dir / str(step)).is_dir()
        return (ckpt_dir / str(step)).is_dir()

    while not reached():
        assert proc.poll() is None, f"trainer exited ({proc.returncode}) before saving {step}"
        assert time.monotonic() < deadline, f"no save of step {step} within 300 s"
        time.sleep(0.002)
    time.sleep(float(rng.uniform(0.0, 0.05 if phase == "commit" else 0.15)))


@pytest.mark.slow
def test_random_kills_during_saves_then_a_truncated_checkpoint(straight, tmp_path, xla_cache):
    workdir = tmp_path / "run"
    ckpt_dir = workdir / "checkpoints"
    rng = np.random.default_rng(12)
    env = dict(os.environ)
    kills = 0
    while kills < 5:
        before = (checkpoint.Checkpointer(workdir, read_only=True).latest_step() or 0
                  if ckpt_dir.is_dir() else 0)
        proc = subprocess.Popen(_cli(workdir, xla_cache, "--config.train.data_workers=2"),
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # A random phase of the first (or, from scratch, sometimes the second) save of this run.
        target = before + 2 * (int(rng.integers(1, 3)) if before == 0 else 1)
        phase = ("start", "arrays", "commit")[kills % 3]  # each phase, at a random moment
        try:
            _wait_for(ckpt_dir, target, phase, proc, rng)
            family = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        kills += 1
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"kill {kills}: orphans {[(p.pid, p.cmdline()) for p in alive]}"
        after = checkpoint.Checkpointer(workdir, read_only=True).latest_step()
        assert (after or 0) >= before  # the last complete step survives every kill
        torn = sorted(p.name for p in ckpt_dir.iterdir() if "tmp" in p.name)
        print(f"kill {kills}: save of step {target}, phase {phase}; latest complete: {after}; "
              f"torn: {torn}")
    assert kills == 5

    # A torn write of the newest step: the next run falls back to the one before it.
    latest = checkpoint.Checkpointer(workdir, read_only=True).latest_step() or 0
    if len(checkpoint.Checkpointer(workdir, read_only=True).all_steps()) < 2:
        latest = max(latest, 2) + 2  # the kills left < 2 steps: make one to fall back from
        subprocess.run(_cli(workdir, xla_cache, f"--config.train.steps={latest}"), cwd=REPO,
                       check=True, capture_output=True, timeout=300)
    damaged = truncate_largest_array_file(ckpt_dir / str(latest))
    done = subprocess.run(_cli(workdir, xla_cache), env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"checkpoint step {latest} is damaged: {damaged}" in done.stderr
    assert (workdir / "checkpoints_corrupt" / str(latest)).is_dir()
    _assert_same_run(straight, workdir, xla_cache)


def _mount_tmpfs(path: pathlib.Path, size: str) -> bool:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_full_disk_is_one_line_and_keeps_earlier_checkpoints(straight, tmp_path, xla_cache):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "12m"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        workdir = disk / "run"
        full = subprocess.run(_cli(workdir, xla_cache), cwd=REPO, capture_output=True, text=True,
                              timeout=300)
        assert full.returncode == 1
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("vision_banana.train: error: OSError: [Errno 28] No space left "
                               f"on device: {workdir}/checkpoints/"), last
        assert f"(full traceback: {workdir}/error.log)" in last
        assert "Traceback" not in full.stderr  # the chains went to error.log
        kept = checkpoint.Checkpointer(workdir, read_only=True).all_steps()
        assert kept and kept[-1] < STEPS
        resumed = tmp_path / "resumed"  # the disk is freed: here, by moving the run
        shutil.copytree(workdir, resumed)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    done = subprocess.run(_cli(resumed, xla_cache), cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(straight, resumed, xla_cache)
