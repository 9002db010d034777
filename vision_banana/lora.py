"""Low-rank adapters (LoRA) on the Flux transformer's projections.

    y = x W + b + (alpha / rank) * (x A) B,   A: (in, rank), B: (rank, out)

`apply(transformer, config)` replaces each `nnx.Linear` whose path (inside the transformer,
"/"-joined, e.g. `double_blocks/3/img_attn/qkv`) matches one of `config.patterns` by a
`LoRALinear` that keeps the base `kernel` / `bias` at the same paths (pretrained import and
export are unchanged) and adds `lora_a` / `lora_b` (`nnx.LoRAParam`, a `Param` subclass, with
logical sharding names derived from the base kernel's). A starts Kaiming-uniform (PEFT's
default), B at zero, so a fresh adapter leaves the model unchanged.

Training only the adapters: the trainer's `train.trainable` regex = `TRAINABLE_PATTERN`
(selects the `lora_a` / `lora_b` leaves within `models.TRAINABLE`), or the nnx filter
`trainable_filter()`; everything else stays frozen in the model state.

`merge(transformer)` folds the adapters into the kernels (W + alpha/rank A B, in float32) and
restores plain `nnx.Linear`s, e.g. before `vision_banana.convert.export`.

Stacked blocks (`model.scan_layers`, `vision_banana.models.stacking`): a stacked layer
(`double_blocks/img_attn/qkv`, kernel (depth, in, out)) is matched through its per-layer paths
(`double_blocks/<i>/img_attn/qkv`), so the same patterns select the same layers in both
layouts; its adapters are stacked too (A (depth, in, rank), B (depth, rank, out)). A pattern
that selects only some layers of a stack raises (use `scan_layers=False` for that).

Config (`config.model.lora`): rank (0 = off), alpha, patterns (regexes, re.search).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vision_banana.models import layers, stacking

# Attention (fused qkv, output proj) and MLP projections of double-stream blocks, fused
# linear1 / linear2 of single-stream blocks: the layers Flux LoRA trainers target.
DEFAULT_PATTERNS = (r"_attn/(qkv|proj)$", r"_mlp/(0|2)$", r"single_blocks/\d+/linear[12]$")
TRAINABLE_PATTERN = r"/lora_[ab]$"


def lora_config(rank: int = 16, alpha: float = 16.0,
                patterns: Sequence[str] = DEFAULT_PATTERNS) -> ml_collections.ConfigDict:
    """The `config.model.lora` section (rank 0 disables LoRA)."""
    return ml_collections.ConfigDict(dict(rank=int(rank), alpha=float(alpha),
                                          patterns=tuple(patterns)))


def trainable_filter():
    """nnx filter of the adapter parameters (what the optimizer should update)."""
    return nnx.LoRAParam


class LoRALinear(nnx.Linear):
    """An `nnx.Linear` (same `kernel` / `bias` Variables as `base`) plus a low-rank update."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, key: jax.Array):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        # The base layer's fields, so nnx.Linear.__call__ computes exactly as before.
        for name in ("in_features", "out_features", "use_bias", "dtype", "param_dtype",
                     "precision", "dot_general", "promote_dtype", "preferred_element_type"):
            setattr(self, name, getattr(base, name))
        self.kernel = base.kernel
        self.bias = base.bias if base.bias is not None else nnx.data(None)
        self.rank, self.alpha = int(rank), float(alpha)
        # Stacked blocks: kernel (layers, in, out) -> A (layers, in, rank), B (layers, rank, out)
        stack = tuple(base.kernel.shape[:-2])
        lead = (None,) * len(stack)
        names = base.kernel.get_metadata().get("out_sharding") or lead + (None, None)
        names = tuple(names)[len(stack):]
        init_a = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform",
                                                   batch_axis=tuple(range(len(stack))))
        self.lora_a = nnx.LoRAParam(
            init_a(key, stack + (base.in_features, self.rank), base.param_dtype),
            **layers.sharding_metadata(lead + (names[0], None)))
        self.lora_b = nnx.LoRAParam(
            jnp.zeros(stack + (self.rank, base.out_features), base.param_dtype),
            **layers.sharding_metadata(lead + (None, names[1])))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def __call__(self, x: jax.Array, out_sharding=None) -> jax.Array:
        y = super().__call__(x, out_sharding=out_sharding)
        x, a, b = self.promote_dtype((x, self.lora_a[...], self.lora_b[...]), dtype=self.dtype)
        return y + ((x @ a) @ b) * jnp.asarray(self.scale, y.dtype)


def _path(parts) -> str:
    return "/".join(str(p) for p in parts)


def _set_child(module: nnx.Module, path: tuple, child: nnx.Module) -> None:
    parent = module
    for part in path[:-1]:
        parent = parent[part] if isinstance(part, int) else getattr(parent, part)
    if isinstance(path[-1], int):
        parent[path[-1]] = child
    else:
        setattr(parent, path[-1], child)


def _matches(path: tuple, sub: nnx.Linear, regexes) -> bool:
    """Whether a layer's path matches; a stacked layer's (kernel (layers, in, out)) through
    the per-layer paths it stands for, all of which must agree."""
    def hit(name):
        return any(r.search(name) for r in regexes)

    stacked = stacking.stacked_part(path)
    if stacked is None or sub.kernel.ndim < 3:
        return hit(_path(path))
    blocks, rest = stacked
    hits = [hit(_path((blocks, i) + rest)) for i in range(sub.kernel.shape[0])]
    if any(hits) and not all(hits):
        raise ValueError(f"lora.patterns select layers {[i for i, h in enumerate(hits) if h]} "
                         f"of the stacked {_path(path)} ({len(hits)} layers): stacked blocks "
                         f"take adapters on all layers or none; set model.scan_layers=False "
                         f"to adapt single layers")
    return all(hits)


def matching_layers(module: nnx.Module, patterns: Sequence[str]) -> list[tuple[tuple, nnx.Linear]]:
    """(path, layer) of every plain `nnx.Linear` in `module` whose path matches a pattern."""
    regexes = [re.compile(p) for p in patterns]
    return [(path, sub) for path, sub in nnx.iter_modules(module)
            if type(sub) is nnx.Linear and _matches(path, sub, regexes)]


def apply(module: nnx.Module, config, *, rngs: "nnx.Rngs | layers.ParamKeys") -> list[str]:
    """Add adapters in place to the layers of `module` matching `config.patterns`.

    Returns the adapted layer paths. Raises ValueError when no layer matches (a misspelt
    pattern would otherwise silently train nothing).
    """
    targets = matching_layers(module, tuple(config.patterns))
    if not targets:
        raise ValueError(f"lora.patterns {tuple(config.patterns)} match no nnx.Linear; layer "
                         f"paths look like 'double_blocks/0/img_attn/qkv'")
    keys = layers.param_keys(rngs)
    for path, layer in targets:
        _set_child(module, path, LoRALinear(layer, int(config.rank), float(config.alpha),
                                            key=keys.params()))
    return [_path(path) for path, _ in targets]


def merge(module: nnx.Module) -> nnx.Module:
    """Fold every adapter of `module` into its kernel, in place; returns `module`.

    kernel <- kernel + (alpha / rank) A B computed in float32, stored in the kernel's dtype;
    the layers become plain `nnx.Linear`s with the same Variables (metadata kept).
    """
    for path, layer in [(p, m) for p, m in nnx.iter_modules(module) if isinstance(m, LoRALinear)]:
        kernel = layer.kernel[...]
        delta = (layer.lora_a[...].astype(jnp.float32) @ layer.lora_b[...].astype(jnp.float32))
        merged = (kernel.astype(jnp.float32) + layer.scale * delta).astype(kernel.dtype)
        plain = nnx.eval_shape(lambda: nnx.Linear(
            layer.in_features, layer.out_features, use_bias=layer.use_bias, dtype=layer.dtype,
            param_dtype=layer.param_dtype, precision=layer.precision,
            dot_general=layer.dot_general, promote_dtype=layer.promote_dtype,
            preferred_element_type=layer.preferred_element_type, rngs=nnx.Rngs(0)))
        plain.kernel = layer.kernel.replace(merged)
        plain.bias = layer.bias if layer.bias is not None else nnx.data(None)
        _set_child(module, path, plain)
    return module
