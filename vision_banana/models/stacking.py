"""Stacked ("scanned") transformer blocks: one module whose parameters carry a leading layer axis.

With `model.scan_layers` the Flux transformer keeps its double- and single-stream blocks as one
`DoubleStreamBlock` / `SingleStreamBlock` each, every parameter stacked on a new leading axis
(`double_blocks/img_attn/qkv/kernel` of shape (depth, D, 3D) instead of `depth` arrays at
`double_blocks/<i>/img_attn/qkv/kernel`), and runs them under `jax.lax.scan` (MaxText /
MaxDiffusion's layout). The compiler then cannot hoist or merge the layers: each layer's
FSDP-sharded weights are all-gathered inside the loop body, just in time for its forward and
again for its rematerialised backward, and each layer's gradient is reduce-scattered into the
sharded stacked gradient as it is produced.

The stacked layout is internal. Public checkpoints keep per-layer names: weight import reads a
stacked parameter as the stack of its per-layer tensors (`convert.lazy.Stacked`), export writes
one tensor per layer, and `unstack_state` / `stack_state` convert a whole state (or a restored
orbax tree) between the two layouts, e.g. to move an existing unrolled run to the stacked one.

The leading layer axis is replicated (logical name None): only the per-layer dimensions are
sharded by the rule table.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

# Block lists that `scan_layers` stacks (attribute names of `Flux`, BFL's names).
STACKED = ("double_blocks", "single_blocks")
_INDEX = re.compile(r"^\d+$")


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def stack_modules(modules: Sequence[nnx.Module]) -> nnx.Module:
    """One module of `modules[0]`'s structure whose every Variable stacks the modules' values
    on a new leading axis (layer i = `modules[i]`); logical sharding names get a leading None.

    The modules must share one structure (same class and hyper-parameters). Works on abstract
    modules (`nnx.eval_shape`) as on concrete ones.
    """
    if not modules:
        raise ValueError("stack_modules needs at least one module")
    graphdef = nnx.graphdef(modules[0])
    states = [nnx.state(m) for m in modules]

    def stack(*variables):
        first = variables[0]
        names = first.get_metadata().get("out_sharding")
        meta = {"out_sharding": (None,) + tuple(names)} if names else {}
        return first.replace(jnp.stack([v.get_value() for v in variables]), **meta)

    return nnx.merge(graphdef, jax.tree.map(stack, *states, is_leaf=_is_var))


def stacked_part(path: Sequence[Any]) -> tuple[str, tuple] | None:
    """(block list, rest of the path) when `path` (inside a transformer) is a stacked parameter
    path such as `("double_blocks", "img_attn", "qkv", "kernel")`; None for other paths
    (per-layer ones like `double_blocks/3/...` included). The rest keeps its element types."""
    path = tuple(path)
    if len(path) >= 2 and str(path[0]) in STACKED and not _INDEX.match(str(path[1])):
        return str(path[0]), path[1:]
    return None


def layer_paths(path: str, depths: Mapping[str, int]) -> list[str] | None:
    """The per-layer paths behind a stacked "/"-joined path: `double_blocks/img_attn/qkv/kernel`
    -> [`double_blocks/0/img_attn/qkv/kernel`, ...]; None when `path` is not stacked.

    depths: {block list: number of layers}, e.g. `depths_of(flux_params)`.
    """
    found = stacked_part(path.split("/"))
    if found is None:
        return None
    blocks, rest = found
    return [f"{blocks}/{i}/{'/'.join(map(str, rest))}" for i in range(int(depths[blocks]))]


def depths_of(params) -> dict[str, int]:
    """{block list: layer count} of a `FluxParams`."""
    return {"double_blocks": int(params.depth), "single_blocks": int(params.depth_single_blocks)}


def _rooted(path: tuple, root: tuple) -> tuple | None:
    return path[len(root):] if path[:len(root)] == root else None


def unstack_state(state: nnx.State, root: Sequence[str] = ("transformer",)) -> nnx.State:
    """`state` with every stacked block parameter under `root` split into per-layer leaves
    (`root/double_blocks/<i>/...`), the unrolled layout of `scan_layers=False`.

    state: a generator-rooted (or, with root=(), transformer-rooted) nnx.State of Variables
    holding arrays; other leaves are kept. The inverse of `stack_state`.
    """
    root = tuple(root)
    flat = {}
    for path, var in nnx.to_flat_state(state):
        sub = _rooted(tuple(path), root)
        found = stacked_part(sub) if sub is not None else None
        if found is None:
            flat[tuple(path)] = var
            continue
        blocks, rest = found
        names = var.get_metadata().get("out_sharding")
        meta = {"out_sharding": tuple(names)[1:]} if names else {}
        value = var.get_value()
        for i in range(value.shape[0]):
            flat[root + (blocks, i) + tuple(rest)] = var.replace(value[i], **meta)
    return nnx.from_flat_state(flat)


def stack_state(state: nnx.State, root: Sequence[str] = ("transformer",)) -> nnx.State:
    """`state` with the per-layer block parameters under `root` (`root/double_blocks/<i>/...`)
    stacked on a leading axis (`root/double_blocks/...`), the layout of `scan_layers=True`.

    Raises ValueError naming the block list when its layer indices are not 0..n-1.
    """
    root = tuple(root)
    flat, groups = {}, {}
    for path, var in nnx.to_flat_state(state):
        sub = _rooted(tuple(path), root)
        if sub is not None and len(sub) >= 2 and str(sub[0]) in STACKED and \
                _INDEX.match(str(sub[1])):
            groups.setdefault((str(sub[0]), tuple(sub[2:])), {})[int(sub[1])] = var
            continue
        flat[tuple(path)] = var
    for (blocks, rest), by_layer in groups.items():
        if sorted(by_layer) != list(range(len(by_layer))):
            raise ValueError(f"{'/'.join(root + (blocks,) + rest)}: layers {sorted(by_layer)} "
                             f"are not 0..{len(by_layer) - 1}")
        layers = [by_layer[i] for i in range(len(by_layer))]
        names = layers[0].get_metadata().get("out_sharding")
        meta = {"out_sharding": (None,) + tuple(names)} if names else {}
        flat[root + (blocks,) + rest] = layers[0].replace(
            jnp.stack([v.get_value() for v in layers]), **meta)
    return nnx.from_flat_state(flat)


def is_stacked_tree(paths: Sequence[str]) -> bool | None:
    """Whether "/"-joined parameter paths (e.g. the keys of a saved checkpoint tree) are in the
    stacked layout (True), the unrolled one (False), or hold no block at all (None)."""
    for path in paths:
        parts = path.split("/")
        for i, part in enumerate(parts[:-1]):
            if part in STACKED:
                return not _INDEX.match(parts[i + 1])
    return None


def keep_saved_layout(config, saved_config: str | os.PathLike) -> None:
    """Resume a workdir in the block layout its checkpoints were written in.

    `config.model.scan_layers` changes the parameter tree, so when the workdir's saved
    config.json (`saved_config`) says otherwise - or predates the key (no `model.scan_layers`:
    the unrolled layout) - the saved value wins, with a warning; a fresh workdir (or
    `stack_state` on a restored state) moves a run to the stacked layout. No-op without a
    saved config or when `config.model` has no `scan_layers`.
    """
    path = pathlib.Path(saved_config)
    if "scan_layers" not in config.model or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # workdir.check_config reports the damaged record, naming it
    was = bool(saved.get("model", {}).get("scan_layers", False))
    if was != bool(config.model.scan_layers):
        logging.warning("%s was written with model.scan_layers=%s; resuming in that layout (a "
                        "fresh workdir starts with scan_layers=%s)", path, was,
                        config.model.scan_layers)
        config.model.scan_layers = was
