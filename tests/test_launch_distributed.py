"""Environment parsing of launch.distributed (pure) and the single-process start-up."""

import pathlib

import jax
import pytest

from launch import distributed
from launch.distributed import ClusterSpec, detect, expand_nodelist, expand_tasks_per_node


@pytest.mark.parametrize("nodelist, hosts", [
    ("node01", ["node01"]),
    ("node01,host2", ["node01", "host2"]),
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("gpu[8-11]", ["gpu8", "gpu9", "gpu10", "gpu11"]),
    ("n[008-010],login1", ["n008", "n009", "n010", "login1"]),
    ("a[1-2],b[3],c", ["a1", "a2", "b3", "c"]),
    ("rack[1-2]-ib", ["rack1-ib", "rack2-ib"]),
    ("x-y.z[5]", ["x-y.z5"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["", "node[a-b]", "node[1-2"])
def test_expand_nodelist_rejects_garbage_naming_it(bad):
    with pytest.raises(ValueError, match="SLURM node list"):
        expand_nodelist(bad)


def test_expand_tasks_per_node():
    assert expand_tasks_per_node("4(x2),3") == [4, 4, 3]
    assert expand_tasks_per_node("8") == [8]
    with pytest.raises(ValueError, match="tasks-per-node"):
        expand_tasks_per_node("4(y2)")


def test_no_cluster_is_single_process(tmp_path):
    spec = detect({}, sysfs_root=tmp_path)
    assert spec.method == "single" and not spec.multi_process


def test_our_variables():
    env = {"VB_COORDINATOR_ADDRESS": "10.0.0.1:1234", "VB_NUM_PROCESSES": "4", "VB_PROCESS_ID": "3",
           "VB_LOCAL_DEVICE_IDS": "0,1"}
    spec = detect(env, sysfs_root="/nonexistent")
    assert spec == ClusterSpec("env", "10.0.0.1:1234", 4, 3, (0, 1), spec.source)
    assert spec.init_kwargs() == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                  "process_id": 3, "local_device_ids": [0, 1],
                                  "cluster_detection_method": "deactivate"}


def test_arguments_override_variables():
    env = {"VB_COORDINATOR_ADDRESS": "10.0.0.1:1234", "VB_NUM_PROCESSES": "4", "VB_PROCESS_ID": "3"}
    spec = detect(env, process_id=1, local_device_ids=[2], sysfs_root="/nonexistent")
    assert (spec.method, spec.process_id, spec.num_processes, spec.local_device_ids) == ("explicit", 1, 4, (2,))


def test_one_process_means_no_init():
    spec = detect({"VB_NUM_PROCESSES": "1"}, sysfs_root="/nonexistent")
    assert spec.method == "single"


@pytest.mark.parametrize("env, message", [
    ({"VB_NUM_PROCESSES": "2", "VB_PROCESS_ID": "0"}, "VB_COORDINATOR_ADDRESS missing"),
    ({"VB_COORDINATOR_ADDRESS": "h:1", "VB_NUM_PROCESSES": "2"}, "VB_PROCESS_ID missing"),
    ({"VB_COORDINATOR_ADDRESS": "h:1", "VB_NUM_PROCESSES": "2", "VB_PROCESS_ID": "2"}, r"outside \[0, 2\)"),
    ({"VB_COORDINATOR_ADDRESS": "h:1", "VB_NUM_PROCESSES": "two", "VB_PROCESS_ID": "0"}, "VB_NUM_PROCESSES='two'"),
    ({"VB_COORDINATOR_ADDRESS": "hostonly", "VB_NUM_PROCESSES": "2", "VB_PROCESS_ID": "0"}, "host:port"),
    ({"VB_COORDINATOR_ADDRESS": "h:1", "VB_NUM_PROCESSES": "2", "VB_PROCESS_ID": "0",
      "VB_LOCAL_DEVICE_IDS": "0;1"}, "VB_LOCAL_DEVICE_IDS"),
])
def test_bad_variables_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        detect(env, sysfs_root="/nonexistent")


SLURM = {
    "SLURM_JOB_ID": "123456", "SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[01-08]",
    "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
}


def test_slurm_one_task_per_gpu():
    spec = detect(SLURM, sysfs_root="/nonexistent")
    # Port follows JAX's rule: 61440 + job id % 4096; the step's first node hosts process 0.
    assert spec == ClusterSpec("slurm", f"gpu07:{61440 + 123456 % 4096}", 16, 9, (1,), spec.source)


def test_slurm_job_nodelist_port_override_and_one_task_per_node():
    env = dict(SLURM, SLURM_NTASKS="2", SLURM_PROCID="1", SLURM_STEP_TASKS_PER_NODE="1(x2)",
               SLURM_STEP_NUM_TASKS="2", VB_COORDINATOR_PORT="7777")
    del env["SLURM_STEP_NODELIST"]
    spec = detect(env, sysfs_root="/nonexistent")
    assert spec.coordinator_address == "gpu01:7777"
    assert spec.local_device_ids is None  # one task per node drives every local GPU


def test_slurm_tasks_already_bound_to_one_gpu_or_on_cpu_keep_all_devices():
    assert detect(dict(SLURM, CUDA_VISIBLE_DEVICES="1"), sysfs_root="/x").local_device_ids is None
    assert detect(dict(SLURM, JAX_PLATFORMS="cpu"), sysfs_root="/x").local_device_ids is None


def test_slurm_batch_script_without_srun_is_single_process():
    env = {k: v for k, v in SLURM.items() if not k.startswith("SLURM_STEP_")}
    spec = detect(dict(env, SLURM_PROCID="0"), sysfs_root="/x")
    assert spec.method == "single" and "outside srun" in spec.source


def test_slurm_step_task_count_wins_over_allocation():
    assert detect(dict(SLURM, SLURM_STEP_NUM_TASKS="4", SLURM_PROCID="3"), sysfs_root="/x").num_processes == 4


def test_slurm_single_task_is_single_process():
    assert detect(dict(SLURM, SLURM_NTASKS="1", SLURM_PROCID="0"), sysfs_root="/x").method == "single"


def test_our_variables_fill_from_slurm():
    spec = detect(dict(SLURM, VB_COORDINATOR_ADDRESS="head:9999"), sysfs_root="/nonexistent")
    assert (spec.method, spec.coordinator_address, spec.num_processes, spec.process_id) == (
        "env", "head:9999", 16, 9)


@pytest.mark.parametrize("env", [
    {"TPU_WORKER_HOSTNAMES": "t1,t2,t3,t4", "TPU_WORKER_ID": "2"},
    {"TPU_ACCELERATOR_TYPE": "v5p-64"},
    {"MEGASCALE_COORDINATOR_ADDRESS": "slice0:8080", "MEGASCALE_NUM_SLICES": "2"},
])
def test_tpu_from_environment(env):
    spec = detect(env, sysfs_root="/nonexistent")
    assert spec.method == "tpu" and spec.init_kwargs() == {}


def _fake_pci(root: pathlib.Path, vendor: str, device: str = "0x0062") -> pathlib.Path:
    dev = root / "bus" / "pci" / "devices" / "0000:00:04.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "device").write_text(device + "\n")
    return root


def test_tpu_from_sysfs_chips(tmp_path):
    assert detect({}, sysfs_root=_fake_pci(tmp_path / "v5p", "0x1ae0")).method == "tpu"
    assert detect({}, sysfs_root=_fake_pci(tmp_path / "nvidia", "0x10de")).method == "single"
    # Google's virtual NIC on a GPU VM: Google vendor id, not a TPU.
    assert detect({}, sysfs_root=_fake_pci(tmp_path / "gvnic", "0x1ae0", "0x0042")).method == "single"


def test_tpu_single_host_or_forced_cpu_is_single(tmp_path):
    assert detect({"TPU_WORKER_HOSTNAMES": "localhost"}, sysfs_root=tmp_path).method == "single"
    tpu_root = _fake_pci(tmp_path / "tpu", "0x1ae0")
    assert detect({"JAX_PLATFORMS": "cpu"}, sysfs_root=tpu_root).method == "single"


def test_our_variables_win_over_tpu():
    env = {"TPU_WORKER_HOSTNAMES": "a,b", "VB_COORDINATOR_ADDRESS": "a:8476",
           "VB_NUM_PROCESSES": "2", "VB_PROCESS_ID": "1"}
    assert detect(env, sysfs_root="/nonexistent").method == "env"


def test_initialize_single_process_is_idempotent(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith(("VB_", "SLURM_", "TPU_", "MEGASCALE_")):
            monkeypatch.delenv(name)
    first = distributed.initialize()
    assert first is distributed.initialize()
    assert (first.process_index, first.process_count) == (jax.process_index(), jax.process_count())
    assert first.device_count == jax.device_count() and first.platform == "cpu"


@pytest.mark.slow
def test_slurm_variables_start_a_real_two_process_job(tmp_path):
    """Two processes given only SLURM's variables (as `srun -n 2` sets them) form one job."""
    import os
    import subprocess
    import sys

    from launch.local import free_port

    script = tmp_path / "slurm_task.py"
    script.write_text(
        "from launch import distributed\n"
        "info = distributed.initialize()\n"
        "print(info.method, info.process_index, info.process_count, info.local_device_count,"
        " info.device_count, info.coordinator_address)\n")
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VB_", "SLURM_", "TPU_"))}
    base.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
                SLURM_JOB_ID="42", SLURM_NTASKS="2", SLURM_STEP_NODELIST="localhost",
                SLURM_STEP_TASKS_PER_NODE="2", SLURM_NODEID="0", VB_COORDINATOR_PORT=str(port))
    repo = pathlib.Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=repo, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(base, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)))
             for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, err
        assert out.split() == ["slurm", str(i), "2", "2", "4", f"localhost:{port}"]
