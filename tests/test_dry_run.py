"""The dry run prints a byte table whose state rows equal what a real sharded init holds."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from vision_banana import dry_run, optim, sharding, train
from vision_banana.configs import tiny

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_parse_mesh_and_device_count():
    assert dry_run.parse_mesh("data=2, fsdp=4") == {"data": 2, "fsdp": 4}
    assert dry_run.device_count_for({"data": 2, "fsdp": 4, "tensor": 1}, None) == 8
    assert dry_run.device_count_for({"data": -1, "fsdp": 4, "tensor": 1}, 16) == 16
    with pytest.raises(ValueError, match="'model=2'"):
        dry_run.parse_mesh("model=2")
    with pytest.raises(ValueError, match="not an integer"):
        dry_run.parse_mesh("data=two")
    with pytest.raises(ValueError, match="--devices"):
        dry_run.device_count_for({"data": -1, "fsdp": 4, "tensor": 1}, None)
    env = {"XLA_FLAGS": "--xla_cpu_foo=1 --xla_force_host_platform_device_count=2"}
    dry_run.force_cpu_devices(64, env)
    assert env["XLA_FLAGS"] == "--xla_cpu_foo=1 --xla_force_host_platform_device_count=64"
    assert env["JAX_PLATFORMS"] == "cpu"


@pytest.mark.slow
def test_dry_run_cli_state_bytes_equal_a_real_sharded_init(tmp_path, xla_cache):
    """CLI on fake devices (its own process), then a real init on this process' 8 devices."""
    out_json = tmp_path / "plan.json"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    done = subprocess.run(
        [sys.executable, "-m", "vision_banana.dry_run",
         f"--config={REPO}/vision_banana/configs/tiny.py:runlocal=1", "--mesh", "data=2,fsdp=4",
         "--device-memory-gb", "0.001", f"--json={out_json}",
         f"--config.train.compilation_cache_dir={xla_cache}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    print(done.stdout)
    # 0.001 GiB (1 MiB) cannot hold the tiny model's state: exit status 3, said plainly.
    assert done.returncode == dry_run.DOES_NOT_FIT, done.stderr[-3000:]
    table = done.stdout
    assert "mesh data=2 fsdp=4 tensor=1 (8 devices)" in table
    for label in ("parameters", "optimizer state", "EMA", "activations / temporaries", "total",
                  "DOES NOT FIT"):
        assert label in table, label
    plan = json.loads(out_json.read_text())
    rows = plan["rows"]
    assert plan["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1} and plan["fits"] is False
    assert rows["temporaries"] > 0 and plan["total"] >= plan["argument_bytes"] + rows["temporaries"]
    # The compiler's own input count = the state and batch rows + the int32 step counter.
    state_rows = sum(rows[k] for k in ("params", "opt_state", "ema", "model_state", "batch"))
    assert plan["argument_bytes"] == state_rows + 4

    # A real sharded init of the same config and mesh, on this process' 8 CPU devices.
    config = tiny.get_config("runlocal=1")
    dry_run.configure(config, {"data": 2, "fsdp": 4})
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    tx = optim.make_optimizer(config.optim, optim.decay_horizon(config))
    _, _, shardings, _ = train.abstract_state(config, tx, mesh, rules)
    state = jax.jit(train.make_init_fn(config, tx), out_shardings=shardings)()
    device0 = mesh.devices.flat[0]
    held = {name: sum(shard.data.nbytes for leaf in jax.tree.leaves(state[name])
                      for shard in leaf.addressable_shards if shard.device == device0)
            for name in ("params", "opt_state", "ema")}
    print(f"bytes on device 0, dry run vs real init: "
          f"{ {k: (plan['device0'][k], v) for k, v in held.items()} }")
    for name, value in held.items():
        assert plan["device0"][name] == value, name
        assert rows[name] == value, name  # the tiny model shards evenly: device 0 is the max


def test_analytic_estimate_printed_and_disagreement_warned():
    """The table carries the analytic estimate; a >50 % gap to the compiler's total warns."""
    from vision_banana import memory_estimate

    config = tiny.get_config("runlocal=1")
    rows = {"params": 1000, "opt_state": 2000, "ema": 1000, "model_state": 0, "batch": 10}
    est = memory_estimate.estimate(config, {"data": 2, "fsdp": 4, "tensor": 1}, rows, 32)
    assert est.rows["gradients"] == 1000 and est.rows["residuals"] > 0
    assert est.sequence == 32 + 2 * 16  # prompt + target + context tokens (16 px, p=2, 2x2)
    full = {**rows, "temporaries": 0, "outputs_not_aliased": 0, "generated_code": 0}

    def plan(total):
        return dry_run.Plan(mesh={"data": 2, "fsdp": 4, "tensor": 1}, num_devices=8,
                            global_batch_size=8, rows=full, device0={}, argument_bytes=total,
                            total=total, estimate=est.rows)

    close, far = plan(est.total), plan(10 * est.total)
    assert "analytic estimate" in dry_run.format_plan(close)
    assert not close.disagrees and "WARNING" not in dry_run.format_plan(close)
    assert far.disagrees and "differ by more than 50 %" in dry_run.format_plan(far)
