"""Device mesh, logical axis rules and shardings for the whole training state.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, ...) in their flax NNX metadata
(`out_sharding`, set by `nnx.with_partitioning`); activations use `batch`, `length`, `embed`.
One short rule table in the config maps each logical name to mesh axes (or to None =
replicated), e.g.

    rules = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"),
             ("heads", "tensor"), ("vocab", None), ...)

The mesh always has the three axes (`data`, `fsdp`, `tensor`); an axis of size 1 costs
nothing. Shape -> shard -> materialize: the trainer `eval_shape`s the state, calls
`tree_shardings` on the abstract tree and jits the init with those `out_shardings`.

A logical axis that cannot be sharded as the rules ask (the dimension is not divisible by the
mesh axes' size, or a mesh axis is already used by another dimension of the same array) falls
back to replication for that dimension only; `tree_shardings` logs each fallback once, so a
tiny model on many devices still runs and a real model shows what did not shard.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# A rule's right-hand side: one mesh axis, several (their product shards the dimension), or None.
MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """Resolve the (data, fsdp, tensor) sizes; at most one may be -1 (= the remaining devices).

    Raises ValueError naming the axes and the device count when the product does not match.
    """
    sizes = [int(mesh_config[a]) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        if known <= 0 or num_devices % known:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices are not divisible by "
                f"the fixed axes' product {known}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices or min(sizes) < 1:
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
            f"but {num_devices} are available")
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(config, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes).

    `config` is the full config (reads `config.mesh`) or the mesh section itself;
    `mesh.num_devices` (optional, -1 = all) restricts a single-process run to the first N
    devices. Axes are
    `AxisType.Auto`: jax >= 0.10 defaults to explicit axes, which would require explicit
    `out_sharding=` on every op of the model.
    """
    mesh_config = config.mesh if hasattr(config, "mesh") else config
    if devices is None:
        devices = jax.devices()
        n = int(mesh_config.get("num_devices", -1))
        if n != -1:
            if jax.process_count() > 1:
                raise ValueError(f"mesh.num_devices={n} is for single-process runs; with "
                                 f"{jax.process_count()} processes leave it at -1")
            if not 1 <= n <= len(devices):
                raise ValueError(f"mesh.num_devices={n}: {len(devices)} devices available")
            devices = devices[:n]
    devices = list(devices)
    shape = mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def rules_from_config(config) -> Rules:
    """The logical rule table of `config.sharding.rules` as a tuple of (name, mesh axes).

    Checks that every mesh axis named is one of (data, fsdp, tensor).
    """
    raw = config.sharding.rules if hasattr(config, "sharding") else config
    rules = []
    for i, rule in enumerate(raw):
        if len(rule) != 2:
            raise ValueError(f"sharding.rules[{i}] = {rule!r}: expected (logical_name, mesh_axes)")
        name, axes = rule[0], rule[1]
        axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
        for a in (axes if isinstance(axes, tuple) else (axes,)):
            if a is not None and a not in MESH_AXES:
                raise ValueError(f"sharding.rules[{i}] maps {name!r} to unknown mesh axis {a!r}; "
                                 f"mesh axes are {MESH_AXES}")
        rules.append((str(name), axes))
    return tuple(rules)


def _axes_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return axes if isinstance(axes, tuple) else (axes,)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules,
                    *, where: str = "", fallbacks: list[str] | None = None) -> PartitionSpec:
    """PartitionSpec for one array of `shape` whose dimensions carry logical `names`.

    Args:
      names: one logical name (or None = replicated) per dimension.
      shape: the array's shape; a dimension not divisible by its mesh axes' size is replicated.
      mesh: the device mesh.
      rules: logical name -> mesh axes.
      where: the array's path, for error and fallback messages.
      fallbacks: if given, a message is appended for each dimension that had to be replicated.
    Raises:
      ValueError: a logical name has no rule (naming the array and the known names), or the
        names do not match the array's rank.
    """
    table = dict(rules)
    if len(names) != len(shape):
        raise ValueError(f"{where}: logical axes {tuple(names)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    spec = []
    for dim, (name, size) in enumerate(zip(names, shape)):
        if name is None:
            spec.append(None)
            continue
        if name not in table:
            raise ValueError(
                f"{where}: logical axis {name!r} has no rule in config.sharding.rules "
                f"(known: {sorted(table)}); add ({name!r}, None) to replicate it")
        axes = tuple(a for a in _axes_tuple(table[name]) if mesh.shape[a] > 1)
        ways = math.prod(mesh.shape[a] for a in axes)
        if not axes:
            spec.append(None)
        elif used.intersection(axes) or size % ways:
            if fallbacks is not None:
                why = ("mesh axis already used by another dimension" if used.intersection(axes)
                       else f"size {size} not divisible by {ways}")
                fallbacks.append(f"{where} dim {dim} ({name} -> {axes}): replicated, {why}")
            spec.append(None)
        else:
            used.update(axes)
            spec.append(axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def _logical_names(var: nnx.Variable) -> tuple[str | None, ...] | None:
    names = var.get_metadata().get("out_sharding")
    return tuple(names) if names else None


def tree_shardings(tree: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for every array of `tree`, with the same structure.

    `tree` may mix nnx Variables (sharded by their `out_sharding` logical names; optax states
    built from nnx States keep the Variables and so their names), plain arrays and
    ShapeDtypeStructs (replicated). Variables in the result keep their metadata and hold a
    NamedSharding as value, so the result matches `tree` exactly (usable as jit
    `out_shardings` and for `ShapeDtypeStruct(..., sharding=...)`).
    """
    fallbacks: list[str] = []
    replicated = NamedSharding(mesh, PartitionSpec())

    def one(path, leaf):
        if isinstance(leaf, nnx.Variable):
            value = leaf.get_value()
            names = _logical_names(leaf)
            if names is None or not hasattr(value, "shape"):
                return leaf.replace(replicated)
            spec = logical_to_spec(names, value.shape, mesh, rules,
                                   where=jax.tree_util.keystr(path), fallbacks=fallbacks)
            return leaf.replace(NamedSharding(mesh, spec))
        return replicated

    out = jax.tree_util.tree_map_with_path(
        one, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
    for message in dict.fromkeys(fallbacks):
        logging.info("sharding fallback: %s", message)
    return out


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying `shardings` (for sharded restore and AOT compile)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def batch_spec(rules: Rules) -> PartitionSpec:
    """PartitionSpec of a batch array: the leading dimension on the `batch` rule's axes."""
    axes = _axes_tuple(dict(rules).get("batch"))
    return PartitionSpec(axes if axes else None)


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
    return NamedSharding(mesh, batch_spec(rules))


def batch_shards(mesh: Mesh, rules: Rules) -> int:
    """How many ways the global batch is split (global batch sizes must be multiples)."""
    return math.prod(mesh.shape[a] for a in _axes_tuple(dict(rules).get("batch")))


def shard_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh, rules: Rules
                ) -> dict[str, jax.Array]:
    """Assemble global arrays from this process's slice of the batch (numpy, leading batch dim).

    Every process passes its own local slice (examples [p*G/P, (p+1)*G/P) of the global batch
    of G); the result is the global (G, ...) jax.Array sharded over the `batch` rule's axes.
    """
    sharding = batch_sharding(mesh, rules)
    count = jax.process_count()
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        global_shape = (value.shape[0] * count,) + value.shape[1:]
        out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def activation_rules(rules: Rules) -> Rules:
    """The rule table for activations: `batch` as given, its mesh axes removed elsewhere.

    Parameters and activations share logical names (`embed`), but under FSDP the `fsdp` axis
    shards parameters' `embed` and activations' `batch`; one array may use a mesh axis once.
    So activations keep `batch -> (data, fsdp)` and drop `data` / `fsdp` from every other
    rule (`embed -> fsdp` becomes replicated, `mlp -> tensor` stays).
    """
    batch_axes = set(_axes_tuple(dict(rules).get("batch")))
    out = []
    for name, axes in rules:
        if name != "batch":
            kept = tuple(a for a in _axes_tuple(axes) if a not in batch_axes)
            axes = None if not kept else (kept[0] if len(kept) == 1 else kept)
        out.append((name, axes))
    return tuple(out)


def to_local(array: jax.Array, mesh: Mesh, rules: Rules) -> np.ndarray:
    """This process's slice (numpy) of a global batch-sharded array; the inverse of
    `shard_batch` (in a single process: the whole array)."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(array))
    from jax.experimental import multihost_utils

    spec = batch_spec(rules)
    spec = PartitionSpec(*spec, *([None] * (array.ndim - 1)))
    return np.asarray(multihost_utils.global_array_to_host_local_array(array, mesh, spec))


@contextlib.contextmanager
def activate(mesh: Mesh, rules: Rules):
    """Make `mesh` current and install `rules` as flax's logical axis rules.

    Model code that constrains activations by logical name (`batch`, `length`, `embed`)
    resolves the names through this context: pass `activation_rules(rules)`.
    """
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        yield mesh
