"""launch.local with real subprocesses: a real 2 x 2 jax.distributed job, failure propagation,
signal forwarding, output prefixing."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from launch import local

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A worker that joins the job through launch.distributed, checks the topology, assembles a
# global array from per-process data and all-reduces it; then optionally one process dies.
WORKER = textwrap.dedent("""
    import os, signal, sys, time
    from launch import distributed
    info = distributed.initialize()
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    print("PID", os.getpid(), flush=True)
    print("TOPOLOGY", info.method, info.process_index, info.process_count,
          jax.local_device_count(), jax.device_count(), flush=True)
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Explicit,))
    k = jax.local_device_count()
    local = np.arange(k, dtype=np.float32) + 10 * info.process_index
    arr = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
    total = jax.jit(jax.shard_map(lambda x: jax.lax.psum(x.sum(keepdims=True), "data"),
                                  mesh=mesh, in_specs=P("data"), out_specs=P()))
    print("SHAPE", arr.shape, "PSUM", float(np.asarray(total(arr).addressable_data(0))[0]), flush=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    victim = info.process_count - 1
    if mode == "ok":
        sys.exit(0)
    if info.process_index == victim:
        time.sleep(1.0)  # let the others enter their collective / sleep first
        print("DYING", time.time(), flush=True)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    if mode == "exit":
        print("BLOCKING", flush=True)
        total(arr).block_until_ready()  # never completes: the victim is gone
    time.sleep(600)
    print("UNREACHABLE", flush=True)
""")


def _launch(tmp_path, *launcher_args, mode="ok", timeout=120):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "launch.local", *launcher_args, "--", sys.executable, str(script), mode]
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - start


def _pids(stdout: str) -> list[int]:
    return [int(p) for p in re.findall(r"^\[p\d+\] PID (\d+)$", stdout, re.M)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_processes_two_devices_real_collective(tmp_path):
    proc, _ = _launch(tmp_path, "--processes", "2", "--devices-per-process", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in (0, 1):
        assert f"[p{i}] TOPOLOGY env {i} 2 2 4" in proc.stdout
        # Global array (4,) from [0, 1] on p0 and [10, 11] on p1; psum over all 4 devices.
        assert f"[p{i}] SHAPE (4,) PSUM 22.0" in proc.stdout
    assert "all 2 process(es) finished successfully" in proc.stderr


@pytest.mark.slow
def test_dead_process_ends_job_blocked_in_collective(tmp_path):
    """p1 exits with status 3 while p0 waits in an all-reduce (5 s grace; default is 10 s)."""
    proc, _ = _launch(tmp_path, "-n", "2", "-k", "2", "--grace-s", "5", mode="exit")
    ended = time.time()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert re.search(r"process 1 \(pid \d+\) exited with status 3", proc.stderr), out
    assert "job failed: process 1 exited with status 3" in proc.stderr
    assert "[p0] BLOCKING" in proc.stdout and "UNREACHABLE" not in proc.stdout
    died = float(re.search(r"\[p1\] DYING ([\d.]+)", proc.stdout).group(1))
    print(f"job ended {ended - died:.1f} s after process 1 died (blocked in collective)")
    assert ended - died < 60 and ended - died < 5 + 10  # SIGKILL at the grace, plus slack
    assert all(_gone(pid) for pid in _pids(proc.stdout)) and len(_pids(proc.stdout)) == 2


@pytest.mark.slow
def test_killed_process_ends_sleeping_job(tmp_path):
    """p2 of 3 is SIGKILLed while p0, p1 sleep (JAX traps SIGTERM, so SIGKILL ends them)."""
    proc, _ = _launch(tmp_path, "-n", "3", "-k", "1", "--grace-s", "3", mode="kill")
    ended = time.time()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 128 + signal.SIGKILL, out
    assert "job failed: process 2 was killed by signal SIGKILL (9)" in proc.stderr, out
    died = float(re.search(r"\[p2\] DYING ([\d.]+)", proc.stdout).group(1))
    print(f"job ended {ended - died:.1f} s after process 2 was killed (others sleeping)")
    assert ended - died < 60 and ended - died < 3 + 10
    assert all(_gone(pid) for pid in _pids(proc.stdout)) and len(_pids(proc.stdout)) == 3


def test_sigint_is_forwarded_to_every_process(tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import os, time\nprint('PID', os.getpid(), flush=True)\ntime.sleep(600)\n")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launch.local", "-n", "2", "--", sys.executable, str(script)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while len([ln for ln in lines if " PID " in ln]) < 2:
        lines.append(launcher.stdout.readline())
    launcher.send_signal(signal.SIGINT)
    rest, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGINT, err
    assert "forwarding it to all processes" in err and "interrupted by SIGINT" in err
    assert "KeyboardInterrupt" in rest  # each child got the SIGINT itself
    assert all(_gone(pid) for pid in _pids("".join(lines)))


def test_sigterm_handled_cleanly_by_every_process_exits_zero(tmp_path):
    """A preemption forwarded to processes that save and exit 0 is not a failure."""
    script = tmp_path / "saver.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys, time
        def stop(signum, frame):
            time.sleep(0.5)  # "saving a checkpoint"
            print("SAVED", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("PID", os.getpid(), flush=True)
        time.sleep(600)
    """))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launch.local", "-n", "2", "--", sys.executable, str(script)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while len([ln for ln in lines if " PID " in ln]) < 2:
        lines.append(launcher.stdout.readline())
    launcher.send_signal(signal.SIGTERM)
    rest, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 0, err
    assert rest.count("SAVED") == 2 and "every process exited cleanly" in err


def test_output_is_prefixed_line_by_line_and_status_passed_on(tmp_path):
    script = tmp_path / "talker.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        i = os.environ["VB_PROCESS_ID"]
        print("hello from", i, os.environ["VB_NUM_PROCESSES"], os.environ["JAX_PLATFORMS"])
        print("flags", os.environ["XLA_FLAGS"])
        sys.stderr.write("progress 1\\rprogress 2\\rdone\\n")
        sys.stdout.write("no newline at the end")
        sys.exit(int(i) * 5)
    """))
    cmd = [sys.executable, "-m", "launch.local", "-n", "2", "-k", "3", "--port", "12345",
           "--grace-s", "2", "--", sys.executable, str(script)]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_dump_to=/tmp/x")
    # bytes, not text: universal-newline decoding would turn the \r of progress bars into \n
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60, env=env)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 5, proc.stderr
    assert "[p0] hello from 0 2 cpu\n" in proc.stdout
    assert "[p0] flags --xla_dump_to=/tmp/x --xla_force_host_platform_device_count=3\n" in proc.stdout
    assert "[p1] progress 1\r[p1] progress 2\r[p1] done\n" in proc.stdout
    assert "[p0] no newline at the end\n" in proc.stdout
    assert "job failed: process 1 exited with status 5" in proc.stderr


def test_child_env_and_helpers():
    env = local.child_env({"XLA_FLAGS": "--a=1 --xla_force_host_platform_device_count=8", "HOME": "/h"},
                          index=1, processes=4, port=999, devices_per_process=2)
    assert env["XLA_FLAGS"] == "--a=1 --xla_force_host_platform_device_count=2"
    assert (env["VB_COORDINATOR_ADDRESS"], env["VB_NUM_PROCESSES"], env["VB_PROCESS_ID"]) == (
        "127.0.0.1:999", "4", "1")
    assert env["JAX_PLATFORMS"] == "cpu" and env["HOME"] == "/h"
    assert local.describe_exit(2) == "exited with status 2"
    assert local.describe_exit(-9) == "was killed by signal SIGKILL (9)"
    p = local.LinePrefixer(b"[p3] ")
    assert p.feed(b"ab") == b"" and p.feed(b"c\nd\re") == b"[p3] abc\n[p3] d\r"
    assert p.flush() == b"[p3] e\n" and p.flush() == b""
    assert p.feed(b"\rbar 1\rbar 2\n") == b"\r[p3] bar 1\r[p3] bar 2\n"  # tqdm redraws


def test_cli_errors_are_clear(capsys):
    with pytest.raises(SystemExit):
        local.parse_args(["--processes", "2"])
    assert "no command given" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must be >= 1"):
        local.Job(["true"], processes=0, devices_per_process=1)
    assert local.main(["-n", "0", "--", "true"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert local.main(["-n", "2", "--", "/nonexistent/command"]) == 127
    assert "cannot start '/nonexistent/command'" in capsys.readouterr().err


LATE = textwrap.dedent("""
    import os, time
    print("PID", os.getpid(), flush=True)
    if os.environ["VB_PROCESS_ID"] == "1":
        time.sleep(600)  # hangs before joining (a stuck import, a wrong command, ...)
    from launch import distributed
    distributed.initialize()
    time.sleep(600)
""")


def test_process_that_never_joins_is_named_and_the_job_stopped(tmp_path):
    """Issue 12.9: one process never joins; the job used to hang silently (200 s observed)."""
    script = tmp_path / "late.py"
    script.write_text(LATE)
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "launch.local", "-n", "2", "--join-timeout-s", "4",
                           "--grace-s", "2", "--", sys.executable, str(script)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.time() - start
    pids = _pids(proc.stdout)
    assert proc.returncode == 124, proc.stdout + proc.stderr
    late_pid = re.search(r"^\[p1\] PID (\d+)$", proc.stdout, re.M).group(1)
    assert (f"process(es) 1 (pid {late_pid}) never reached launch.distributed.initialize 4 s "
            "after start; stopping the job") in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("[launch.local] job failed: process(es) 1")
    assert took < 4 + 2 + 30
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)
