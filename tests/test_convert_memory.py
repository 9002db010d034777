"""Loading that scales: bytes per device from shapes and shardings (before loading) equal what
the loaded shards hold, and the host's peak memory while loading a checkpoint of a few hundred
MB stays near the model's own size (measured in a fresh process: the kernel's RSS high-water
mark, reset just before loading, with `resource.getrusage` reported beside it)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import torch_refs
from flax import nnx

from vision_banana import convert, sharding
from vision_banana.convert import flux as flux_map
from vision_banana.convert import safetensors_io
from vision_banana.models.flux import Flux, FluxParams

REPO = pathlib.Path(__file__).resolve().parents[1]
# A 107M-parameter Flux (428 MB in float32): hidden 1024 = 8 heads x 128, 2 + 2 blocks.
BIG = FluxParams(in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096,
                 hidden_size=1024, mlp_ratio=4.0, num_heads=8, depth=2, depth_single_blocks=2,
                 axes_dim=(16, 56, 56), theta=10_000, qkv_bias=True, guidance_embed=True)
OVERHEAD = 96 * 2 ** 20  # allocator / runtime growth allowed on top of the formula
# FSDP on `embed`, tensor parallelism on `mlp` / `heads` (the trainer's default table).
RULES = (("batch", ("data", "fsdp")), ("length", None), ("embed", "fsdp"), ("mlp", "tensor"),
         ("heads", "tensor"), ("vocab", None), ("latent", None), ("cond", None), ("norm", None))


def test_bytes_per_device_match_loaded_shards(tmp_path_factory):
    folder, _, gen, cfg = torch_refs.tiny_generator(tmp_path_factory)
    from vision_banana import models

    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    abstract = nnx.state(nnx.eval_shape(lambda: models.build_generator(cfg, rngs=nnx.Rngs(0))))
    shardings = sharding.tree_shardings(abstract, mesh, RULES)
    predicted = convert.bytes_per_device(abstract, shardings)
    loaded = convert.load_pretrained(folder, abstract, shardings, progress=False)
    assert convert.addressable_bytes(loaded) == predicted
    assert len(predicted) == 8 and sum(predicted.values()) < 8 * sum(
        int(np.prod(v.shape)) * 4 for _, v in nnx.to_flat_state(abstract))  # some sharding
    kernel = loaded["transformer"]["double_blocks"][0]["img_attn"]["qkv"]["kernel"][...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    reference = gen.transformer.double_blocks[0].img_attn.qkv.kernel[...]
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(reference))
    report = convert.memory_report({"params": abstract}, {"params": shardings})
    assert "params" in report and "total" in report


def _write_big_checkpoint(folder: pathlib.Path) -> int:
    """BIG in diffusers names, float32, sharded; returns the largest tensor's bytes."""
    abstract = nnx.state(nnx.eval_shape(lambda: Flux(BIG, rngs=nnx.Rngs(0))))
    shapes = {"/".join(map(str, p)): v.shape for p, v in nnx.to_flat_state(abstract)}
    specs = []
    for ours, rule in flux_map.diffusers_rules(BIG).items():
        specs += [(n, s, np.float32) for n, s in rule.export_shapes(shapes[ours]).items()]
    rng = np.random.default_rng(0)
    safetensors_io.write_sharded(
        folder, "diffusion_pytorch_model", specs,
        lambda name: rng.random(dict((n, s) for n, s, _ in specs)[name], np.float32),
        max_shard_bytes=100 * 2 ** 20)
    (folder / "config.json").write_text(json.dumps(flux_map.diffusers_config(BIG)))
    return max(int(np.prod(s)) * 4 for s in shapes.values())


PROBE = r"""
import json, os, resource, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, numpy as np
from flax import nnx
from vision_banana import convert, sharding
from vision_banana.models.flux import Flux, FluxParams

RULES = tuple((n, tuple(a) if isinstance(a, list) else a) for n, a in json.loads(sys.argv[3]))

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

params = FluxParams(**json.loads(sys.argv[2]))
mesh = sharding.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
abstract = nnx.state(nnx.eval_shape(lambda: Flux(params, rngs=nnx.Rngs(0))))
shardings = sharding.tree_shardings(abstract, mesh, RULES)
predicted = convert.bytes_per_device(abstract, shardings)
for d in jax.devices():  # start every device's allocator before the baseline
    jax.device_put(np.zeros(1024, np.float32), d).block_until_ready()
# getrusage's ru_maxrss keeps the parent's size across fork + exec (a pytest process with torch
# loaded), so the peak of this load is the kernel's per-process high-water mark, reset here
# ("5" > clear_refs); ru_maxrss is reported beside it.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
loaded = convert.load_pretrained(sys.argv[1], abstract, shardings, root="transformer",
                                 progress=False)
jax.block_until_ready(jax.tree.leaves(loaded))
held = convert.addressable_bytes(loaded)
print(json.dumps({"rss_before": before, "peak": status("VmHWM"),
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "held": sum(held.values()), "match": held == predicted}))
"""


def test_peak_host_memory_while_loading(tmp_path):
    largest = _write_big_checkpoint(tmp_path / "transformer")
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in BIG.__dict__.items()}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "transformer"),
                          json.dumps(params), json.dumps(RULES)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    growth = stats["peak"] - stats["rss_before"]
    budget = stats["held"] + 1.5 * largest + OVERHEAD
    print(f"\nmodel held {stats['held'] / 2**20:.0f} MiB, largest tensor {largest / 2**20:.1f} "
          f"MiB, peak growth while loading {growth / 2**20:.0f} MiB, budget "
          f"{budget / 2**20:.0f} MiB (ru_maxrss {stats['ru_maxrss'] / 2**20:.0f} MiB)")
    assert stats["match"]  # bytes-per-device report == addressable shards
    assert stats["held"] >= 400 * 2 ** 20
    assert growth <= budget, stats
