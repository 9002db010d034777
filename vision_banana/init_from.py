"""Starting a run from pretrained weights (`config.init_from`) and keeping its checkpoints small.

    state = init_from.fresh_state(source, init_fn, abstract, shardings)  # sharded, pretrained
    frozen, rest = init_from.split_pretrained(model_state)  # what checkpoints omit / keep
    frozen = init_from.reimport(source, abstract_frozen)    # on restore, from the same files

A fresh run (no checkpoint in its workdir) with `config.init_from` set builds its sharded train
state with the pretrained tensors in `params`, `model_state` and `ema`
(`convert.load_train_state`: each tensor read straight into its shards), and everything else
(LoRA adapters, optimizer state, RNG counters, step) as the trainer's init makes it. The init
is jitted with only those other leaves as outputs, so XLA drops the random initialization of
the pretrained ones: nothing is allocated twice, and the init compiles in a fraction of the
time (0.07 s instead of 22 s for the tiny test Flux on CPU).

Frozen pretrained weights (T5, CLIP and the VAE; with LoRA also the transformer's base kernels)
never change during training, yet they are most of the state: 67 GB of FLUX.1 float32 weights
at full size against ~0.1 GB of rank-16 adapters. Checkpoints therefore hold only what training
changes or what cannot be re-read: trainable params, optimizer state, EMA, and the non-parameter
part of `model_state` (RNG counters, prompt caches, untrained adapters). The omitted part is every
`nnx.Param` of `model_state` other than a LoRA adapter; `fresh_state` has checked that the
pretrained checkpoint provides each of those, so a restore re-imports them from `init_from`.
Each checkpoint records the source and its files' sizes (`frozen_record`); a restore reads from
the recorded path, or from the run's current `init_from` when the checkpoint moved there, and
fails naming them when neither can be read or the files changed size (`check_source`).
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx

from vision_banana.models import stacking

# The leaves a pretrained checkpoint provides: every parameter but the LoRA adapters
# (`convert.load_train_state` raises when one of them has no tensor). In `model_state` these
# are the frozen weights checkpoints omit; LoRA adapters outside `train.trainable` are random
# and stay in the checkpoint.
PRETRAINED = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))
# Train-state parts holding pretrained leaves (opt_state: moments, zeros at the start).
PARTS = ("params", "model_state", "ema")


def split_pretrained(tree: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(pretrained params, the rest) of a generator-rooted nnx.State (of arrays, abstract
    values or shardings)."""
    return nnx.split_state(tree, PRETRAINED, ...)


def merge(pretrained: nnx.State, rest: nnx.State) -> nnx.State:
    """Inverse of `split_pretrained`."""
    return nnx.merge_state(pretrained, rest)


def _source_files(source: str) -> dict[str, int]:
    """{"<part>/<file name>": size in bytes} of the weight files of every part that
    `convert.discover(source)` finds (location-independent, so a moved copy matches)."""
    from vision_banana.convert import discover

    files: dict[str, int] = {}
    for part, comp in discover(source).components.items():
        weights = pathlib.Path(comp.weights)  # a diffusers component folder or a BFL file
        for path in sorted(weights.glob("*.safetensors")) if weights.is_dir() else [weights]:
            files[f"{part}/{path.name}"] = path.stat().st_size
    return files


def absolute(source: str | os.PathLike) -> str:
    """`source` (comma-separated paths, as `convert.discover` takes) with absolute paths, so a
    checkpoint's record stays valid from any working directory."""
    return ",".join(str(pathlib.Path(p.strip()).expanduser().absolute())
                    for p in str(source).split(",") if p.strip())


def frozen_record(source: str, frozen: nnx.State) -> dict[str, Any]:
    """JSON-able description of the omitted weights: source, leaf count, bytes, file sizes.

    The count is of per-layer arrays, as the checkpoint names them: a stacked block parameter
    (`models.stacking`) counts once per layer, so the record is the same in either layout.
    """
    import jax
    import numpy as np

    leaves = jax.tree.leaves(frozen)
    count = sum(int(v.shape[0]) if stacking.stacked_part(p[1:]) is not None
                and str(p[0]) == "transformer" else 1
                for p, v in nnx.to_flat_state(frozen))
    source = absolute(source)
    return {"init_from": source, "num_arrays": int(count),
            "bytes": int(sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape))
                             for x in leaves)),
            "files": _source_files(str(source))}


def check_source(record: Mapping[str, Any], where: str, moved_to: str = "") -> str:
    """Where to re-import the frozen weights of a checkpoint from, given its `frozen` record.

    The recorded `init_from`, or else `moved_to` (the run's current `config.init_from`: the
    same checkpoint at a new path), whichever has the recorded weight files with their recorded
    sizes. Raises FileNotFoundError naming the sources when none can be read, ValueError when
    one was read but its files differ (another checkpoint behind the same path).
    """
    recorded = str(record["init_from"])
    candidates = [recorded]
    if moved_to and absolute(moved_to) != recorded:
        candidates.append(absolute(moved_to))
    saved = {k: int(v) for k, v in dict(record.get("files") or {}).items()}
    unreadable, differing = [], []
    for source in candidates:
        try:
            files = _source_files(source)
        except (OSError, ValueError) as e:
            unreadable.append(f"{source!r} ({e})")
            continue
        changed = sorted(k for k, v in saved.items() if files.get(k) != v)
        if not changed:
            return source
        differing.append(f"{source!r} ({len(changed)} weight files differ, e.g. {changed[0]}: "
                         f"{saved[changed[0]]} bytes then, {files.get(changed[0])} now)")
    if differing:
        raise ValueError(f"{where}: the frozen pretrained weights cannot be re-imported: "
                         f"init_from changed since the checkpoint was written: "
                         f"{'; '.join(differing + unreadable)}")
    raise FileNotFoundError(
        f"{where} omits the frozen pretrained weights, to be re-imported from init_from, which "
        f"cannot be read: {'; '.join(unreadable)}. Put that checkpoint back, or set "
        f"config.init_from to where it moved")


def reimport(source: str, abstract_frozen: nnx.State, *, progress: bool = True) -> nnx.State:
    """The frozen pretrained params, read from `source` into the shardings of
    `abstract_frozen` (Variables holding ShapeDtypeStructs with `.sharding`)."""
    from vision_banana.convert import PretrainedLoader

    with PretrainedLoader(source) as loader:
        return loader.load(abstract_frozen, missing="error", progress=progress)


def fresh_state(source: str | os.PathLike, init_fn: Callable[[], dict[str, Any]],
                abstract: Mapping[str, Any], shardings: Mapping[str, Any], *,
                compiler_options: dict | None = None, progress: bool = True
                ) -> dict[str, Any]:
    """A new sharded train state: pretrained weights from `source`, the rest from `init_fn`.

    init_fn: () -> train state (`train.make_init_fn`); abstract / shardings: its
    `jax.eval_shape` and `sharding.tree_shardings`. `params`, `model_state` and `ema` get
    every tensor the checkpoint has (`convert.load_train_state`, read into their shardings);
    LoRA adapters, the optimizer state, RNG counters and the step come from `init_fn`, jitted
    with only those as outputs. Raises if a parameter other than a LoRA adapter has no
    pretrained tensor or a checkpoint tensor is left unused (wrong model config), which is also
    what makes the frozen weights re-importable on restore.
    """
    import jax

    from vision_banana import convert, sharding

    def pretrained_out(tree, k):  # the pretrained part of state part k (None when absent)
        return split_pretrained(tree)[0] if k in PARTS and tree is not None else None

    def rest_out(tree, k):
        return split_pretrained(tree)[1] if k in PARTS and tree is not None else tree

    def rest():
        return {k: rest_out(v, k) for k, v in init_fn().items()}

    rest_shardings = {k: rest_out(v, k) for k, v in shardings.items()}
    state = jax.jit(rest, out_shardings=rest_shardings, compiler_options=compiler_options)()
    for k in PARTS:
        if abstract.get(k) is None:
            continue
        # Placeholders with their target shardings: load_train_state reads the tensors
        # straight into them.
        target = sharding.abstract_with_shardings(pretrained_out(abstract[k], k),
                                                  pretrained_out(shardings[k], k))
        state[k] = merge(target, state[k])
    logging.info("initializing from pretrained weights at %s", source)
    return convert.load_train_state(str(source), state, progress=progress)


def memory_report(abstract: Mapping[str, Any], shardings: Mapping[str, Any]) -> str:
    """`convert.memory_report` of a train state's parts (params, opt_state, ema, model_state),
    from shapes and shardings alone (call it before anything is allocated)."""
    from vision_banana import convert

    names = [k for k in ("params", "opt_state", "ema", "model_state")
             if abstract.get(k) is not None]
    return convert.memory_report({k: abstract[k] for k in names},
                                 {k: shardings[k] for k in names})
