"""Bytes each device holds for a sharded state, computed from shapes and shardings alone.

`bytes_per_device(tree, shardings)` works on abstract trees (ShapeDtypeStructs / nnx Variables
from `eval_shape`), so the report can be printed before anything is allocated; on materialized
arrays it equals the sizes of their `addressable_shards` (tested).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx


def _flat(tree) -> list[tuple[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
    return [(jax.tree_util.keystr(p, simple=True, separator="/"),
             x.get_value() if isinstance(x, nnx.Variable) else x) for p, x in leaves]


def bytes_per_device(tree, shardings=None) -> dict[jax.Device, int]:
    """{device: bytes of `tree`'s shards on it}.

    tree: pytree of arrays / ShapeDtypeStructs / nnx Variables; shardings: same structure
    (Shardings or Variables holding them, as `sharding.tree_shardings` returns), else each
    leaf's own `.sharding`. A replicated leaf counts in full on every device holding it.
    """
    out: dict[jax.Device, int] = defaultdict(int)
    shard_list = _flat(shardings) if shardings is not None else None
    leaves = _flat(tree)
    if shard_list is not None and len(shard_list) != len(leaves):
        raise ValueError(f"shardings have {len(shard_list)} leaves, the tree {len(leaves)}")
    for i, (path, leaf) in enumerate(leaves):
        if not hasattr(leaf, "shape"):
            continue
        sharding = shard_list[i][1] if shard_list is not None else getattr(leaf, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding):
            raise ValueError(f"{path}: no sharding (pass `shardings` for abstract trees)")
        shard = sharding.shard_shape(tuple(leaf.shape))
        nbytes = int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
        for device in sharding.device_set:
            out[device] += nbytes
    return dict(out)


def addressable_bytes(tree) -> dict[jax.Device, int]:
    """{device: bytes} actually held by the materialized arrays of `tree` (addressable shards)."""
    out: dict[jax.Device, int] = defaultdict(int)
    for _, leaf in _flat(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] += shard.data.nbytes
    return dict(out)


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.3f} GiB"


def memory_report(trees: Mapping[str, Any], shardings: Mapping[str, Any] | None = None) -> str:
    """A table of bytes per device for named trees (e.g. params, opt_state, ema, model_state):
    per tree the largest and smallest per-device amount and the total over devices."""
    rows, per_device = [], defaultdict(int)
    for name, tree in trees.items():
        if tree is None:
            continue
        counts = bytes_per_device(tree, None if shardings is None else shardings[name])
        for d, n in counts.items():
            per_device[d] += n
        values = list(counts.values()) or [0]
        rows.append((name, max(values), min(values), sum(values)))
    values = list(per_device.values()) or [0]
    rows.append(("total", max(values), min(values), sum(values)))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'max/device':>14}  {'min/device':>14}  {'all devices':>14}"]
    lines += [f"{n:<{width}}  {_gib(a):>14}  {_gib(b):>14}  {_gib(c):>14}" for n, a, b, c in rows]
    return "\n".join(lines)
