"""Export a tuned transformer (and the VAE) to the diffusers layout, or to BFL single files.

    export_transformer(generator, "out/FLUX.1-dev-tuned/transformer")        # config.json + shards
    export_pipeline(generator, "out/FLUX.1-dev-tuned", source="ckpt/FLUX.1-dev")
    FluxTransformer2DModel.from_pretrained("out/FLUX.1-dev-tuned/transformer")  # diffusers

Any of our checkpoints exports: a full fine-tune, or a LoRA one (adapters folded into the
kernels on the fly, W + alpha/rank A B in float32, without changing the module). Tensors are
converted and written one at a time (`safetensors_io.write_sharded`), so the host holds one
tensor beyond the model. On several processes every process takes part in gathering each
tensor; process 0 writes.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from vision_banana.convert import flux as flux_map
from vision_banana.convert import vae as vae_map
from vision_banana.convert.lazy import Rule
from vision_banana.convert.safetensors_io import write_file, write_sharded
from vision_banana.lora import LoRALinear
from vision_banana.models import stacking
from vision_banana.models.autoencoder import AutoencoderKL
from vision_banana.models.flux import Flux

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
# Pipeline parts copied unchanged (frozen) from the source checkpoint by `export_pipeline`.
COPIED = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler",
          "model_index.json")


def _transformer(module: nnx.Module) -> Flux:
    flux = getattr(module, "transformer", module)
    if not isinstance(flux, Flux):
        raise TypeError(f"expected a Flux transformer or a Generator, got {type(module).__name__}")
    return flux


def _host(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _arrays(module: nnx.Module) -> tuple[dict[str, Callable[[], np.ndarray]], dict[str, Any]]:
    """({path: () -> host array}, {path: abstract value}) of `module`'s parameters, with LoRA
    adapters folded into their kernels (and not listed themselves). Stacked blocks
    (`models.stacking`) are listed per layer (`double_blocks/<i>/...`), as checkpoints name
    them; each layer is sliced on device, so the host holds one layer at a time."""
    getters: dict[str, Callable[[], np.ndarray]] = {}
    values: dict[str, Any] = {}
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        if isinstance(var, nnx.LoRAParam):
            continue
        if stacking.stacked_part(path) is None:
            name = "/".join(map(str, path))
            getters[name] = (lambda v=var: _host(v[...]))
            values[name] = var[...]
            continue
        blocks, rest = stacking.stacked_part(path)
        value = var[...]
        for i in range(value.shape[0]):
            name = "/".join(map(str, (blocks, i) + tuple(rest)))
            getters[name] = (lambda v=var, i=i: _host(v[...][i]))
            values[name] = jax.ShapeDtypeStruct(value.shape[1:], value.dtype)
    for path, layer in nnx.iter_modules(module):
        if isinstance(layer, LoRALinear):
            def merged(layer=layer, i=None):
                pick = (lambda x: x) if i is None else (lambda x: x[i])
                delta = (_host(pick(layer.lora_a[...])).astype(np.float32)
                         @ _host(pick(layer.lora_b[...])).astype(np.float32))
                kernel = _host(pick(layer.kernel[...]))
                return (kernel.astype(np.float32) + layer.scale * delta).astype(kernel.dtype)
            found = stacking.stacked_part(path)
            if found is None or layer.kernel.ndim < 3:
                getters["/".join(map(str, path)) + "/kernel"] = merged
                continue
            blocks, rest = found
            for i in range(layer.kernel.shape[0]):
                getters["/".join(map(str, (blocks, i) + tuple(rest) + ("kernel",)))] = \
                    functools.partial(merged, layer, i)
    return getters, values


def _plan(module: nnx.Module, rule_for: Callable[[str], Rule | None], dtype
          ) -> tuple[list, Callable[[str], np.ndarray]]:
    """(specs, produce(name)) for `write_file` / `write_sharded`: every parameter of `module`
    through its rule, in parameter order."""
    getters, values = _arrays(module)
    specs, owner = [], {}
    for ours, value in values.items():
        rule = rule_for(ours)
        if rule is None:
            raise ValueError(f"parameter {ours} has no export rule")
        out_dtype = np.dtype(dtype if dtype is not None else value.dtype)
        for name, shape in rule.export_shapes(value.shape).items():
            specs.append((name, shape, out_dtype))
            owner[name] = (ours, rule, out_dtype)
    cache: dict[str, np.ndarray] = {}

    def produce(name: str) -> np.ndarray:
        if name not in cache:
            ours, rule, out_dtype = owner[name]
            cache.clear()  # specs follow parameter order: the previous rule's parts are done
            cache.update({k: np.asarray(v, dtype=out_dtype)
                          for k, v in rule.export(getters[ours]()).items()})
        return cache.pop(name)

    return specs, produce


def _write(module, out: pathlib.Path, rule_for, dtype, *, single_file: bool, config: dict | None,
           max_shard_bytes: int) -> list[pathlib.Path]:
    specs, produce = _plan(module, rule_for, dtype)
    if jax.process_index() != 0:
        for name, _, _ in specs:  # every process joins the gathers of sharded arrays
            produce(name)
        return []
    if single_file:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_file(out, specs, produce, {"format": "pt"})
        return [out]
    files = write_sharded(out, DIFFUSERS_WEIGHTS, specs, produce, max_shard_bytes=max_shard_bytes)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return [out / "config.json"] + files


def export_transformer(module: nnx.Module, out: str | os.PathLike, *, format: str = "diffusers",
                       dtype=None, max_shard_bytes: int = 5 * 2 ** 30) -> list[pathlib.Path]:
    """Write our transformer (a `Flux`, or a `Generator`'s) as a checkpoint; returns the files.

    format "diffusers": `out` is a folder (`config.json`, `diffusion_pytorch_model*.safetensors`
    and an index when sharded) that `FluxTransformer2DModel.from_pretrained` loads.
    format "bfl": `out` is one .safetensors file in BFL names (`flux1-dev.safetensors` style).
    dtype: stored dtype (e.g. "bfloat16"); None keeps each parameter's dtype.
    """
    flux = _transformer(module)
    if format == "diffusers":
        rules = flux_map.diffusers_rules(flux.params)
    elif format == "bfl":
        rules = flux_map.bfl_rules(flux.params)
    else:
        raise ValueError(f"format={format!r}; expected 'diffusers' or 'bfl'")
    return _write(flux, pathlib.Path(out), rules.get, dtype, single_file=format == "bfl",
                  config=flux_map.diffusers_config(flux.params),
                  max_shard_bytes=max_shard_bytes)


def export_autoencoder(module: nnx.Module, out: str | os.PathLike, *, format: str = "diffusers",
                       dtype=None) -> list[pathlib.Path]:
    """Write our AutoencoderKL (or a `Generator`'s): a diffusers `vae/` folder, or (format
    "bfl") one `ae.safetensors` file in BFL names."""
    ae = getattr(module, "autoencoder", module)
    if not isinstance(ae, AutoencoderKL):
        raise TypeError(f"expected an AutoencoderKL or a Generator, got {type(ae).__name__}")
    levels = len(ae.params.ch_mult)
    if format == "diffusers":
        rule_for = lambda path: vae_map.diffusers_rule(path, levels)  # noqa: E731
    elif format == "bfl":
        rule_for = vae_map.bfl_rule
    else:
        raise ValueError(f"format={format!r}; expected 'diffusers' or 'bfl'")
    return _write(ae, pathlib.Path(out), rule_for, dtype, single_file=format == "bfl",
                  config=vae_map.diffusers_config(ae.params), max_shard_bytes=5 * 2 ** 30)


def _copy(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Hard-link files when possible (same filesystem: no extra space), else copy."""
    if src.is_dir():
        for item in src.rglob("*"):
            if item.is_file():
                _copy(item, dst / item.relative_to(src))
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_pipeline(module: nnx.Module, out: str | os.PathLike, *, source: str | os.PathLike,
                    dtype=None, max_shard_bytes: int = 5 * 2 ** 30) -> pathlib.Path:
    """A complete diffusers pipeline folder: our transformer plus the frozen parts (VAE, text
    encoders, tokenizers, scheduler, model_index.json) taken unchanged from `source` (the
    diffusers folder the model was imported from). `FluxPipeline.from_pretrained(out)` (or
    `FluxKontextPipeline`) loads it."""
    out, source = pathlib.Path(out), pathlib.Path(source)
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"{source}: not a diffusers pipeline folder (no model_index.json)")
    export_transformer(module, out / "transformer", dtype=dtype, max_shard_bytes=max_shard_bytes)
    if jax.process_index() == 0:
        for name in COPIED:
            if (source / name).exists():
                _copy(source / name, out / name)
    return out
