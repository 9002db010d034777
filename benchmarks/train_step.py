"""Train-step speed: step time, tokens/s and MFU of a config's jitted train step.

    python benchmarks/train_step.py --config=vision_banana/configs/tiny.py \
        [--config.train.global_batch_size=16] [--steps=10] [--json=out.json]
    # FLUX.1 [dev] at full width and reduced depth, two depths -> per-layer cost, extrapolated
    # to the full 19 + 38 blocks (--compile_only: memory only, no init, no steps):
    python benchmarks/train_step.py \
        --config=vision_banana/configs/flux_dev.py:res=512,batch=8 --config.mesh.fsdp=8 \
        --layers=1,2 --layers=2,4 [--compile_only]

`--layers=D,S` runs the config with D double- and S single-stream blocks (repeat the flag for
several depths). Each run reports per-device memory (the compiled step's arguments, i.e. the
state, and temporaries, from `memory_analysis()`) and the step time; with two depths or more a
least-squares line cost = fixed + per_layer x (D + S) gives the per-layer memory and time and
their extrapolation to the config's own depth (exact for a fixed D:S ratio such as FLUX's 1:2).
On CPU with fake devices, full-width FLUX steps need tens of GiB of host memory to run: use
`--compile_only` there (memory only), and a tiny config for timed steps.

The step is the trainer's own (`train.compile_train_step`: donated state, mesh shardings) on
random batches of the config's shapes, so data loading is excluded. MFU = model FLOPs per step
/ step time / peak FLOP/s, with model FLOPs counted as in REFERENCES.md "Performance anchors":

  6 x (parameters a token passes) x tokens      (forward + backward, recompute excluded)
  + 3 x 4 x T^2 x D per attention layer          (QK^T and AV, T = joint sequence length)

where an image token passes `img_in`, its stream's weights of every double block
(`img_attn`, `img_mlp`), every single block (`linear1`, `linear2`) and `final_layer.linear`; a
text token passes `txt_in`, the `txt_*` weights of the double blocks and the single blocks;
adaLN modulation (`*_mod`, `modulation`, `adaLN_modulation`) and the time / guidance /
pooled-text embedders run once per sample. A trainable byte text encoder is counted the same
way over its own tokens (its blocks per token, attention over the prompt, `pool_proj` once);
frozen parts (the autoencoder) are excluded. Kontext-style context tokens count as image tokens.

Peak: the accelerator's dense bf16 peak when known (H100 / H200: 989 TFLOP/s per chip), else
measured in this run as the best rate of a large jitted matmul in the model's compute dtype
(on CPU: what XLA reaches on this machine, all cores).
"""

from __future__ import annotations

import json
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vision_banana import model_factory, optim, sharding, train

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}

# Parameter path patterns -> what they cost (see the module docstring).
_PER_SAMPLE = re.compile(r"(img_mod|txt_mod|/modulation/|adaLN_modulation|time_in|vector_in|"
                         r"guidance_in|pool_proj)")
# Stacked blocks (model.scan_layers) have no layer index in their paths.
_TXT_STREAM = re.compile(r"^transformer/(txt_in|double_blocks/(\d+/)?txt_)")
_IMG_STREAM = re.compile(r"^transformer/(img_in|double_blocks/(\d+/)?img_|final_layer/linear)")
_JOINT = re.compile(r"^transformer/single_blocks/")
_TEXT_ENCODER = re.compile(r"^text_encoder/")


def count_flops(config, params) -> dict[str, float]:
    """Model FLOPs of one training step for `config` (see the module docstring)."""
    m = config.model
    h, w = model_factory.resolution(config)
    factor = 2 * (m.autoencoder.patch_size if m.autoencoder.kind == "patch"
                  else 2 ** (len(m.autoencoder.ch_mult) - 1))
    n_target = (h // factor) * (w // factor)
    n_img = n_target * (2 if m.context_mode == "sequence" else 1)
    te = m.text_encoder
    # Text tokens of the transformer's txt stream: the prompt bytes, or T5's tokens.
    n_txt = int(te.max_length if te.kind == "byte" else te.t5_max_length)
    joint = n_img + n_txt
    groups = {"img": 0, "txt": 0, "joint": 0, "sample": 0, "text_encoder": 0, "other": 0}
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                        for k in path)
        name = name.removesuffix("/value")
        if name.endswith("embedding") or name.endswith("pos_embed"):
            continue  # lookups, not matmuls
        if _PER_SAMPLE.search(name):
            groups["sample"] += x.size
        elif _TXT_STREAM.search(name):
            groups["txt"] += x.size
        elif _IMG_STREAM.search(name):
            groups["img"] += x.size
        elif _JOINT.search(name):
            groups["joint"] += x.size
        elif _TEXT_ENCODER.search(name):
            groups["text_encoder"] += x.size
        else:
            groups["other"] += x.size  # norms' scales: elementwise, negligible
    f = m.flux
    layers = int(f.depth) + int(f.depth_single_blocks)
    per_sample = 6 * (groups["img"] * n_img + groups["txt"] * n_txt
                      + groups["joint"] * joint + groups["sample"]
                      + groups["text_encoder"] * n_txt)
    attention = 12 * joint ** 2 * int(f.hidden_size) * layers
    if te.kind == "byte":  # trainable; frozen T5 / CLIP are not in `params` nor counted
        attention += 12 * n_txt ** 2 * int(te.width) * int(te.depth)
    b = int(config.train.global_batch_size)
    return {"flops_per_step": float(b * (per_sample + attention)),
            "matmul_flops_per_step": float(b * per_sample),
            "attention_flops_per_step": float(b * attention),
            "image_tokens": n_img, "text_tokens": n_txt,
            **{f"params_{k}": float(v) for k, v in groups.items()}}


def measured_peak(dtype, size: int = 4096, repeats: int = 5) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) jitted matmul on device 0."""
    a = jnp.ones((size, size), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def peak_flops(config) -> tuple[float, str]:
    kind = jax.devices()[0].device_kind
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak * jax.device_count(), f"{kind} bf16 dense peak x {jax.device_count()}"
    dtype = jnp.dtype(config.model.dtype)
    return (measured_peak(dtype) * jax.device_count(),
            f"measured {dtype} matmul on {kind} x {jax.device_count()} device(s)")


def device_memory(compiled) -> dict[str, float]:
    """Per-device bytes of a compiled step (`memory_analysis()`): state arguments, temporaries,
    their sum (outputs alias the donated state)."""
    m = compiled.memory_analysis()
    return {"memory_arguments_bytes": float(m.argument_size_in_bytes),
            "memory_temporaries_bytes": float(m.temp_size_in_bytes),
            "memory_per_device_bytes": float(m.argument_size_in_bytes + m.temp_size_in_bytes)}


def benchmark(config, steps: int, warmup: int, compile_only: bool = False) -> dict[str, float]:
    mesh = sharding.make_mesh(config)
    rules = sharding.rules_from_config(config)
    decay = optim.decay_horizon(config)
    tx, schedule = optim.make_optimizer(config.optim, decay), optim.make_schedule(config.optim, decay)
    graphdef, abstract, shardings, tokenizer = train.abstract_state(config, tx, mesh, rules)
    shapes = train.batch_shapes(config, tokenizer)
    t = time.perf_counter()
    step = train.compile_train_step(config, graphdef, tx, schedule, abstract, shardings, shapes,
                                    mesh, rules)
    compile_s = time.perf_counter() - t
    memory = device_memory(step)
    layers = {"double_blocks": int(config.model.flux.depth),
              "single_blocks": int(config.model.flux.depth_single_blocks)}
    if compile_only:
        return {"compile_s": compile_s, "devices": jax.device_count(), **layers, **memory}
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    with sharding.activate(mesh, sharding.activation_rules(rules)):
        state = jax.jit(train.make_init_fn(config, tx), out_shardings=shardings)()
        rng = np.random.default_rng(0)
        batches = []
        for i in range(2):  # alternate two batches: no host work inside the timed loop
            local = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if v.dtype == jnp.uint8
                         else rng.integers(0, 2, v.shape).astype(bool) if v.dtype == jnp.bool_
                         else rng.integers(1, 200, v.shape).astype(np.int32))
                     for k, v in shapes.items()}
            local["task_id"] = rng.integers(0, len(config.tasks), shapes["task_id"].shape,
                                            dtype=np.int32)
            batches.append(sharding.shard_batch(local, mesh, rules))
        for i in range(warmup):
            state, metrics = step(state, batches[i % 2])
        jax.block_until_ready(metrics)
        times = []
        for i in range(steps):
            t = time.perf_counter()
            state, metrics = step(state, batches[i % 2])
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    flops = count_flops(config, abstract["params"])
    peak, peak_source = peak_flops(config)
    b = int(config.train.global_batch_size)
    tokens = b * (flops["image_tokens"] + flops["text_tokens"])
    return {
        "config_model_params": float(sum(x.size for x in jax.tree.leaves(abstract["params"]))),
        "global_batch_size": b, "devices": jax.device_count(), "device_kind":
        jax.devices()[0].device_kind, "compile_s": compile_s, "step_s_median": step_s,
        "step_s_min": float(np.min(times)), "examples_per_s": b / step_s,
        "tokens_per_s": tokens / step_s, **flops,
        "xla_counted_flops_per_step": float(cost.get("flops", float("nan"))) if cost else None,
        "model_flops_per_s": flops["flops_per_step"] / step_s, "peak_flops_per_s": peak,
        "peak_source": peak_source, "mfu": flops["flops_per_step"] / step_s / peak,
        "loss": float(metrics["loss"]), **layers, **memory,
    }


def per_layer(results: list[dict], full_layers: int) -> dict[str, float]:
    """Least-squares cost = fixed + per_layer x layers over runs at several depths, for memory
    and (when timed) step time, with the cost extrapolated to `full_layers` blocks."""
    n = np.array([r["double_blocks"] + r["single_blocks"] for r in results], float)
    out = {"full_depth_layers": float(full_layers)}
    keys = ["memory_per_device_bytes", "memory_temporaries_bytes", "memory_arguments_bytes"]
    keys += ["step_s_median"] if all("step_s_median" in r for r in results) else []
    for key in keys:
        slope, fixed = np.polyfit(n, np.array([r[key] for r in results], float), 1)
        out[f"{key}_per_layer"] = float(slope)
        out[f"{key}_fixed"] = float(fixed)
        out[f"{key}_at_full_depth"] = float(fixed + slope * full_layers)
    return out


_CONFIG = config_flags.DEFINE_config_file("config", "vision_banana/configs/tiny.py",
                                          "Python config file (get_config)", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "timed steps")
_WARMUP = flags.DEFINE_integer("warmup", 2, "untimed steps after compilation")
_JSON = flags.DEFINE_string("json", None, "write the results here")
_LAYERS = flags.DEFINE_multi_string("layers", [], "D,S: run with D double and S single blocks "
                                    "(repeat for a per-layer fit); default: the config's depth")
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False,
                                  "compile and report memory only (no init, no timed steps)")


def _print(result: dict) -> None:
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def main(argv):
    del argv
    config = _CONFIG.value
    full = int(config.model.flux.depth) + int(config.model.flux.depth_single_blocks)
    runs = []
    for spec in _LAYERS.value or [""]:
        if spec:
            try:
                double, single = (int(x) for x in spec.split(","))
            except ValueError:
                raise app.UsageError(f"--layers={spec!r}: expected D,S (two integers)") from None
            config.model.flux.depth, config.model.flux.depth_single_blocks = double, single
        runs.append(benchmark(config, _STEPS.value, _WARMUP.value, _COMPILE_ONLY.value))
        _print(runs[-1])
    result = {"runs": runs}
    if len(runs) > 1:
        result["per_layer"] = per_layer(runs, full)
        print("per-layer fit (extrapolated to the config's own depth):")
        _print(result["per_layer"])
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(result if len(runs) > 1 else runs[0], f, indent=2)


if __name__ == "__main__":
    app.run(main)
