"""Load pretrained weights into (abstract or materialized) generator state, tensor by tensor,
straight into each parameter's target sharding.

    with PretrainedLoader("ckpt/FLUX.1-dev") as src:
        params = src.load(abstract_params, shardings)    # jax.Arrays, sharded as asked
        src.check_complete()                             # every checkpoint tensor was used

Memory: a parameter is read from disk only when it is built (`jax.make_array_from_callback`,
one call per device shard); the checkpoint rows behind this host's shards are read once
(prefetched as one block, then sliced per device) and dropped as soon as the array exists. The
host therefore holds the model's own arrays plus about one checkpoint tensor at a time, never
the whole checkpoint; on a multi-host mesh each host reads only the rows of its shards.

Paths: `target` is a generator-rooted tree of nnx Variables (an `nnx.State` from `nnx.split`
/ `nnx.eval_shape`, or the trainer's `params` / `model_state`), e.g.
`transformer/double_blocks/0/img_attn/qkv/kernel`, `autoencoder/encoder/conv_in/kernel`,
`text_encoder/t5/...`, `text_encoder/clip/...`; `root` prefixes the paths of a bare
component's state (`root="transformer"` for a `Flux` alone).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from vision_banana.convert import clip as clip_map
from vision_banana.convert import flux as flux_map
from vision_banana.convert import t5 as t5_map
from vision_banana.convert import vae as vae_map
from vision_banana.convert.layout import Component, Layout, discover
from vision_banana.convert.lazy import Lazy, Rule, Stacked, normalize_index
from vision_banana.convert.safetensors_io import Checkpoint, open_checkpoint
from vision_banana.models import stacking

# Where each checkpoint part lives in the Generator's tree.
ROOTS = {"transformer": "transformer/", "vae": "autoencoder/", "t5": "text_encoder/t5/",
         "clip": "text_encoder/clip/"}


class _Part:
    """One opened checkpoint part: its tensors and how our paths map onto them."""

    def __init__(self, comp: Component, axes_dim=None):
        self.comp = comp
        self.ckpt: Checkpoint = open_checkpoint(comp.weights)
        self.used: set[str] = set()
        self.ignored: set[str] = set()
        names = set(self.ckpt)
        if comp.part == "transformer":
            if comp.format == "bfl":
                prefix = flux_map.bfl_prefix(names)
                self.params = flux_map.params_from_bfl(self.ckpt, axes_dim, str(comp.weights))
                table = flux_map.bfl_rules(self.params, prefix)
            else:
                self.params = flux_map.params_from_diffusers_config(comp.config, str(comp.weights))
                table = flux_map.diffusers_rules(self.params)
            self._rule: Callable[[str], Rule | None] = table.get
        elif comp.part == "vae":
            if comp.format == "bfl":
                self.params = vae_map.params_from_bfl(self.ckpt)
                self._rule = vae_map.bfl_rule
            else:
                self.params = vae_map.params_from_diffusers_config(comp.config, str(comp.weights))
                levels = len(self.params.ch_mult)
                self._rule = lambda path: vae_map.diffusers_rule(path, levels)
        elif comp.part == "t5":
            self.params = t5_map.params_from_config(comp.config, str(comp.weights))
            self._rule = t5_map.rule
            self.ignored = set(t5_map.IGNORED) & names
        else:
            self.params = clip_map.params_from_config(comp.config, str(comp.weights))
            prefix = clip_map.prefix_of(names)
            self._rule = lambda path: clip_map.rule(path, prefix)
            self.ignored = {n for n in names if n.endswith(clip_map.IGNORED_SUFFIXES)}

    def lazy(self, path: str) -> Lazy | None:
        if self.comp.part == "transformer":
            # Stacked blocks (model.scan_layers): the stack of the per-layer tensors.
            per_layer = stacking.layer_paths(path, stacking.depths_of(self.params))
            if per_layer is not None:
                parts = [self.lazy(p) for p in per_layer]
                return Stacked(parts) if parts and all(p is not None for p in parts) else None
        rule = self._rule(path)
        if rule is None or any(name not in self.ckpt for name in rule.theirs):
            return None
        self.used.update(rule.theirs)
        return rule.lazy(self.ckpt)

    def unused(self) -> list[str]:
        return sorted(set(self.ckpt) - self.used - self.ignored)


def read_params(comp: Component, axes_dim=None):
    """The architecture of one checkpoint part (FluxParams, AutoEncoderParams, T5Params or
    CLIPTextParams), from its config or, for BFL files, its tensor shapes."""
    part = _Part(comp, axes_dim)
    part.ckpt.close()
    return part.params


def _path_str(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def _leaf_value(leaf):
    return leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf


def _sharding_of(value, given) -> jax.sharding.Sharding:
    given = _leaf_value(given) if given is not None else None
    if isinstance(given, jax.sharding.Sharding):
        return given
    sharding = getattr(value, "sharding", None)
    if isinstance(sharding, jax.sharding.Sharding):
        return sharding
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def build_array(lazy: Lazy, shape, dtype, sharding: jax.sharding.Sharding) -> jax.Array:
    """`jax.make_array_from_callback` over `lazy`, reading this host's block once."""
    dtype = np.dtype(dtype)
    indices = [normalize_index(ix, shape) for ix in
               sharding.addressable_devices_indices_map(tuple(shape)).values()]
    if indices:
        box = tuple((min(ix[a][0] for ix in indices), max(ix[a][1] for ix in indices))
                    for a in range(len(shape)))
        lazy.prefetch(box)
    try:
        # A fresh, owned copy per shard: the device buffer never aliases checkpoint blocks.
        return jax.make_array_from_callback(
            tuple(shape), sharding,
            lambda ix: np.array(lazy.read(normalize_index(ix, shape)), dtype=dtype, copy=True))
    finally:
        lazy.release()


class PretrainedLoader:
    """An opened pretrained checkpoint (see `layout.discover` for the accepted paths).

    axes_dim: RoPE split for BFL single files whose head size is not 128 (tiny tests).
    """

    def __init__(self, paths: str | os.PathLike | Sequence | Layout, *, axes_dim=None):
        self.layout = paths if isinstance(paths, Layout) else discover(paths)
        self.parts: dict[str, _Part] = {}
        try:
            for name, comp in self.layout.components.items():
                self.parts[name] = _Part(comp, axes_dim)
        except Exception:
            self.close()
            raise

    def _find(self, path: str) -> tuple[_Part | None, str]:
        for name, root in ROOTS.items():
            if path.startswith(root) and name in self.parts:
                return self.parts[name], path[len(root):]
        return None, path

    def plan(self, target, *, root: str = "") -> dict[str, Lazy]:
        """{leaf path: Lazy} for every leaf of `target` the checkpoint provides (shape-checked)."""
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        out = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(target, is_leaf=_is_var)[0]:
            name = _path_str(path)
            part, sub = self._find(prefix + name)
            lazy = part.lazy(sub) if part is not None else None
            if lazy is None:
                continue
            shape = tuple(_leaf_value(leaf).shape)
            if tuple(lazy.shape) != shape:
                raise ValueError(f"{prefix + name}: the model expects shape {shape}, checkpoint "
                                 f"{part.comp} gives {tuple(lazy.shape)}: the model config does "
                                 "not match the checkpoint (convert.model_config(path) builds one "
                                 "that does)")
            out[name] = lazy
        return out

    def load(self, target, shardings=None, *, root: str = "", missing: str = "error",
             delete_replaced: bool = True, progress: bool = True):
        """`target` with every leaf the checkpoint provides replaced by a loaded jax.Array.

        target: tree of nnx Variables (or arrays / ShapeDtypeStructs) holding abstract or
        concrete values; each loaded leaf gets the leaf's dtype and the sharding from
        `shardings` (same tree; Variables or Shardings), else the leaf's own, else device 0.
        missing: "error" (a leaf absent from the checkpoint raises, naming them; nothing is
        read) or "keep" (left as is: LoRA adapters, prompt caches, ... initialized elsewhere).
        delete_replaced: free a concrete leaf's old buffers as soon as its replacement exists
        (peak memory = model + one tensor when loading over a random init). Callers must not
        use the old arrays afterwards.
        """
        if missing not in ("error", "keep"):
            raise ValueError(f"missing={missing!r}; expected 'error' or 'keep'")
        plan = self.plan(target, root=root)
        flat = jax.tree_util.tree_flatten_with_path(target, is_leaf=_is_var)[0]
        absent = [_path_str(p) for p, _ in flat if _path_str(p) not in plan]
        if absent and missing == "error":
            raise KeyError(f"{len(absent)} parameters have no tensor in {self.layout.sources}: "
                           f"{absent[:8]}{' ...' if len(absent) > 8 else ''} (parts found: "
                           f"{sorted(self.parts)}; pass missing='keep' to leave them)")
        given = None
        if shardings is not None:
            given = {_path_str(p): s for p, s in
                     jax.tree_util.tree_flatten_with_path(shardings, is_leaf=_is_var)[0]}
        total = sum(lazy.nbytes for lazy in plan.values())
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="load", disable=not progress)

        def one(path, leaf):
            name = _path_str(path)
            lazy = plan.get(name)
            if lazy is None:
                return leaf
            value = _leaf_value(leaf)
            sharding = _sharding_of(value, given.get(name) if given else None)
            array = build_array(lazy, value.shape, value.dtype, sharding)
            if delete_replaced and isinstance(value, jax.Array) and not value.is_deleted():
                value.delete()
            bar.update(lazy.nbytes)
            return leaf.replace(array) if isinstance(leaf, nnx.Variable) else array

        try:
            return jax.tree_util.tree_map_with_path(one, target, is_leaf=_is_var)
        finally:
            bar.close()

    def unused(self) -> dict[str, list[str]]:
        """{part: checkpoint tensors no loaded leaf used} (after `load` calls)."""
        return {name: part.unused() for name, part in self.parts.items() if part.unused()}

    def check_complete(self, parts: Sequence[str] | None = None) -> None:
        """Raise if a loaded part has tensors the model never asked for (architecture mismatch:
        e.g. a model config with fewer blocks than the checkpoint)."""
        parts = [p for p in (parts or self.parts) if self.parts[p].used]
        bad = {p: names for p, names in self.unused().items() if p in parts}
        if bad:
            lines = [f"{self.parts[p].comp}: {len(n)} unused tensors, e.g. {n[:5]}"
                     for p, n in bad.items()]
            raise ValueError("checkpoint tensors left unused by the model:\n  "
                             + "\n  ".join(lines))

    def close(self) -> None:
        for part in self.parts.values():
            part.ckpt.close()

    def __enter__(self) -> "PretrainedLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


TRAIN_STATE_KEYS = ("params", "model_state", "ema")


def load_train_state(paths, state: dict, *, axes_dim=None, progress: bool = True) -> dict:
    """The trainer's freshly initialized state with pretrained weights swapped in.

    state: `{"params", "opt_state", "ema", "model_state", ...}` of generator-rooted trees of
    materialized arrays (what `vision_banana.train` jits out of its init). `params`,
    `model_state` and `ema` (when present) get every tensor the checkpoint has, each old buffer
    freed as its replacement is built (peak = model + one tensor); `opt_state` and anything
    else are left as initialized (Adam moments start at zero). Raises if a parameter other than
    a LoRA adapter has no pretrained tensor, or a checkpoint tensor was left unused.
    """
    out = dict(state)
    with PretrainedLoader(paths, axes_dim=axes_dim) as loader:
        absent = []
        for key in TRAIN_STATE_KEYS:
            if out.get(key) is None:
                continue
            plan = loader.plan(out[key])
            for path, leaf in jax.tree_util.tree_flatten_with_path(out[key], is_leaf=_is_var)[0]:
                name = _path_str(path)
                if (name not in plan and isinstance(leaf, nnx.Param)
                        and not isinstance(leaf, nnx.LoRAParam)):
                    absent.append(f"{key}/{name}")
            out[key] = loader.load(out[key], missing="keep", progress=progress)
        if absent:
            raise KeyError(f"parameters without a pretrained tensor in {loader.layout.sources}: "
                           f"{absent[:8]}{' ...' if len(absent) > 8 else ''}")
        loader.check_complete()
    return out


def load_pretrained(paths, target, shardings=None, *, root: str = "", missing: str = "error",
                    axes_dim=None, progress: bool = True, check_complete: bool = True) -> Any:
    """One-shot `PretrainedLoader(paths).load(target, shardings, ...)`, then (by default)
    `check_complete` on the parts it used."""
    with PretrainedLoader(paths, axes_dim=axes_dim) as loader:
        out = loader.load(target, shardings, root=root, missing=missing, progress=progress)
        if check_complete:
            loader.check_complete()
        logging.info("loaded %s", ", ".join(str(p.comp) for p in loader.parts.values() if p.used))
        return out
