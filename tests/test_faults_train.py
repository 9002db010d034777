"""Faults around a training run (issue 12): a rerun with another config, two trainers on one
workdir, a damaged latest checkpoint or data state, grain workers of a killed trainer, errors
reduced to one line. The random-kill / full-disk loop is in test_faults_injection.py."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest
from test_resume import _assert_bitwise_equal, _restore

from vision_banana import checkpoint, failures, predict, train
from vision_banana import workdir as run_dir
from vision_banana.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
# A failed orbax restore leaves its reader coroutines unawaited (orbax's, not ours).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _config(cache, steps=4, **train_kw):
    c = tiny.get_config("runlocal=1")
    c.mesh.num_devices = 1
    c.train.steps = steps
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.compilation_cache_dir = str(cache)
    for k, v in train_kw.items():
        c.train[k] = v
    return c


@pytest.fixture(scope="module")
def run4(tmp_path_factory, xla_cache):
    """A 4-step run with checkpoints at steps 2 and 4 (read-only: tests copy it)."""
    workdir = tmp_path_factory.mktemp("run4") / "run"
    train.train_and_evaluate(_config(xla_cache), workdir)
    assert checkpoint.Checkpointer(workdir, read_only=True).all_steps() == [2, 4]
    return workdir


def _copy(run, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


# ------------------------------------------------------------------------------ config


def test_rerun_with_another_config_is_refused_and_the_run_stays_loadable(run4, tmp_path, xla_cache):
    """Issue 12.1: `tiny.py:runlocal=1`, then `tiny.py` on the same workdir, then predict."""
    workdir = _copy(run4, tmp_path)
    recorded = (workdir / "config.json").read_bytes()
    other = tiny.get_config()  # not runlocal: another model
    other.mesh.num_devices = 1
    other.train.compilation_cache_dir = str(xla_cache)
    with pytest.raises(run_dir.ConfigChanged, match=r"model\.flux\.depth: 1 -> 2") as err:
        train.train_and_evaluate(other, workdir)
    assert "--config.allow_config_change=true" in str(err.value)
    assert (workdir / "config.json").read_bytes() == recorded
    restored = predict.restore(workdir)  # predict / eval --workdir still load the run
    assert restored.step == 4
    lr = _config(xla_cache)
    lr.optim.lr = 5e-4  # a hyperparameter too needs the explicit switch
    with pytest.raises(run_dir.ConfigChanged, match=r"1 differing keys: optim\.lr: 0\.001 -> 0\.0005"):
        train.train_and_evaluate(lr, workdir)
    assert (workdir / "config.json").read_bytes() == recorded


def test_run_length_changes_are_not_config_changes():
    old = json.loads(run_dir.config_json(tiny.get_config("runlocal=1")))
    new = tiny.get_config("runlocal=1")
    new.train.steps, new.train.log_every, new.mesh.num_devices = 50, 3, 1
    diff = run_dir.config_diff(old, json.loads(run_dir.config_json(new)))
    assert sorted(diff) == ["mesh.num_devices", "train.log_every", "train.steps"]
    assert not [k for k in diff if not run_dir._resumable(k)]


@pytest.mark.slow
def test_allowed_config_change_keeps_the_old_record(run4, tmp_path, xla_cache):
    workdir = _copy(run4, tmp_path)
    recorded = (workdir / "config.json").read_text()
    c = _config(xla_cache, steps=5)
    c.optim.lr = 5e-4
    c.allow_config_change = True
    train.train_and_evaluate(c, workdir)
    kept = sorted(workdir.glob("config.*.json"))
    assert len(kept) == 1 and kept[0].read_text() == recorded
    now = json.loads((workdir / "config.json").read_text())
    assert now["optim"]["lr"] == 5e-4 and now["allow_config_change"] is True


# -------------------------------------------------------------------------------- lock


_HOLDER = textwrap.dedent("""
    import sys, time
    from vision_banana import workdir
    workdir.WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def _holder(workdir):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_trainer_refuses_naming_the_holder(run4, tmp_path, xla_cache):
    workdir = _copy(run4, tmp_path)
    metrics = (workdir / "metrics.jsonl").read_bytes()
    holder = _holder(workdir)
    try:
        with pytest.raises(run_dir.WorkdirLocked,
                           match=rf"in use by pid {holder.pid} on host '{socket.gethostname()}'"):
            train.train_and_evaluate(_config(xla_cache, steps=6), workdir)
        assert (workdir / "metrics.jsonl").read_bytes() == metrics  # nothing interleaved
        cli = subprocess.run(
            [sys.executable, "-m", "vision_banana.train",
             f"--config={REPO}/vision_banana/configs/tiny.py:runlocal=1", f"--workdir={workdir}",
             "--config.mesh.num_devices=1"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 1
        last = cli.stderr.strip().splitlines()[-1]
        assert last.startswith("vision_banana.train: error: WorkdirLocked: ") and str(holder.pid) in last
        assert "Traceback" not in cli.stderr
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: a stale lock on this host is taken over.
    lock = run_dir.WorkdirLock(workdir).acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert not (workdir / run_dir.LOCK_NAME).exists()


def test_lock_of_another_host_is_refused_with_the_file_to_delete(tmp_path):
    path = tmp_path / run_dir.LOCK_NAME
    path.write_text(json.dumps({"host": "elsewhere-7", "pid": 12, "since": "2026-01-01"}))
    with pytest.raises(run_dir.WorkdirLocked, match=rf"pid 12 on host 'elsewhere-7'.*delete {path}"):
        run_dir.WorkdirLock(tmp_path).acquire()
    path.write_text("{half a lock")  # a holder killed mid-write: stale
    with run_dir.WorkdirLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert run_dir.WorkdirLock(tmp_path, enabled=False).acquire().held is False  # processes > 0


# ------------------------------------------------------------------ damaged checkpoints


def _abstract(config):
    from vision_banana import optim, sharding

    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    tx = optim.make_optimizer(config.optim, optim.decay_horizon(config))
    _, abstract, shardings, _ = train.abstract_state(config, tx, mesh, rules)
    parts = {k: abstract[k] for k in checkpoint.STATE_ITEMS}
    return sharding.abstract_with_shardings(parts, {k: shardings[k] for k in parts})


def truncate_largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
    """Truncate the largest OCDBT data file of a step to 100 bytes (a torn write)."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(files, key=lambda p: p.stat().st_size)
    with open(target, "r+b") as f:
        f.truncate(100)
    return target


def test_damaged_latest_checkpoint_falls_back_to_the_previous_step(run4, tmp_path, xla_cache, caplog):
    workdir = _copy(run4, tmp_path)
    damaged = truncate_largest_array_file(workdir / "checkpoints" / "4")
    config = _config(xla_cache)
    ckpt = checkpoint.Checkpointer(workdir)
    with pytest.raises(checkpoint.CorruptCheckpointError, match=rf"step 4 is damaged: {damaged}: .*"
                       rf"mv {workdir / 'checkpoints' / '4'} {workdir / 'checkpoints_corrupt' / '4'}"):
        ckpt.restore_latest(_abstract(config), fall_back=False)  # a multi-process job
    with caplog.at_level("WARNING"):
        step, _, data_state = ckpt.restore_latest(_abstract(config))
    ckpt.close()
    assert step == 2 and data_state["next_batch"] == 2
    assert "step 4 is damaged" in caplog.text and str(damaged) in caplog.text
    assert (workdir / "checkpoints_corrupt" / "4").is_dir()  # kept, out of orbax's way
    # The run resumes from step 2 and reaches the uninterrupted run's step-4 state exactly.
    train.train_and_evaluate(config, workdir)
    a, data_a = _restore(run4, config, 4)
    b, data_b = _restore(workdir, config, 4)
    _assert_bitwise_equal(a, b)
    assert data_a == data_b


def test_damaged_only_checkpoint_is_one_line_naming_the_file(run4, tmp_path, xla_cache):
    workdir = _copy(run4, tmp_path)
    shutil.rmtree(workdir / "checkpoints" / "2")
    damaged = truncate_largest_array_file(workdir / "checkpoints" / "4")
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    with pytest.raises(checkpoint.CorruptCheckpointError) as err:
        ckpt.restore_latest(_abstract(_config(xla_cache)))
    message = str(err.value)
    assert "\n" not in message and str(damaged) in message and "no earlier checkpoint" in message


def test_damaged_data_state_is_reported_as_such(run4, tmp_path, xla_cache):
    workdir = _copy(run4, tmp_path)
    state = workdir / "checkpoints" / "4" / "data" / "process_0-of-1.json"
    state.write_text('{"next_batch": 4, "see')
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    with pytest.raises(checkpoint.CorruptCheckpointError,
                       match=rf"{state}: data iterator state is damaged \(not valid JSON") as err:
        ckpt.restore(4, _abstract(_config(xla_cache)))
    assert "does not match" not in str(err.value)


# ------------------------------------------------------------------------ grain workers


_WORKERS = textwrap.dedent("""
    import time
    import absl.flags
    import numpy as np
    absl.flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
    from data_mix.iterator import make_iterator
    from data_mix.mixture import Mixture
    from vision_banana.configs import tiny
    c = tiny.get_config("runlocal=1")
    it = make_iterator(Mixture(c.data), global_batch_size=8, process_index=0, process_count=1,
                       tokenize=lambda p: np.zeros((len(p), 4), np.int32),
                       task_names=list(c.tasks), num_workers=4)
    next(it)
    print("ready", flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
def test_grain_workers_die_with_a_killed_parent():
    proc = subprocess.Popen([sys.executable, "-c", _WORKERS], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in children if "multiprocessing" in " ".join(p.cmdline())]
        assert len(workers) >= 4, [p.cmdline() for p in children]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"orphans left: {[p.pid for p in alive]}"
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- one line


def test_one_line_of_cause():
    try:
        try:
            raise ValueError('RESOURCE_EXHAUSTED: Error writing "k" in OCDBT database: Failed '
                             'writing: "/w/checkpoints/4.orbax-checkpoint-tmp/d/ab": Failed to '
                             "write 10 bytes to file 8: No space left on device "
                             "[os_error_code='28']\nTensorStore spec ...")
        except ValueError as e:
            raise Exception("Encountered error while writing array index\n" + "x\n" * 500) from e
    except Exception as e:
        line = failures.one_line(e)
    assert line == ("OSError: [Errno 28] No space left on device: "
                    "/w/checkpoints/4.orbax-checkpoint-tmp/d/ab")
    try:
        try:
            open("/nonexistent/dir/x")
        except OSError as e:
            raise RuntimeError("wrapped\n" * 300) from e
    except RuntimeError as e:
        assert failures.one_line(e).startswith("FileNotFoundError: [Errno 2] No such file")
    assert failures.one_line(run_dir.ConfigChanged("a: b\nmore")) == "ConfigChanged: a: b"


def test_config_change_before_any_checkpoint_is_allowed(tmp_path):
    c = tiny.get_config("runlocal=1")
    (tmp_path / "config.json").write_text(run_dir.config_json(c))
    other = tiny.get_config()
    assert "model.flux.depth" in run_dir.check_config(other, tmp_path)  # no checkpoints: fine
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    with pytest.raises(run_dir.ConfigChanged):
        run_dir.check_config(other, tmp_path)


def test_full_disk_on_a_metrics_write_names_the_file(tmp_path):
    from vision_banana import metrics_io

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    writer = metrics_io.MetricWriter(tmp_path)
    with pytest.raises(OSError) as err:
        writer.write_scalars(1, {"loss": 1.0})
    writer.close()  # does not raise again (it would mask the first error)
    assert failures.one_line(err.value) == (
        f"OSError: [Errno 28] No space left on device: {tmp_path / 'metrics.jsonl'}")
