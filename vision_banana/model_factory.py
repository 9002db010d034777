"""Building a generator from a config: the model, its abstract state, its sampler and XLA options.

    graphdef, params, model_state = build_model(config)            # real arrays
    graphdef, params, model_state, tokenizer = abstract_model(config)   # shapes only
    h, w = resolution(config)                                      # the run's image size
    jax.jit(fn, compiler_options=xla_options(config) or None)

Shared by the trainer (`vision_banana.train`), its evaluators and the `Predictor`
(`vision_banana.predict`), so that a restored run is split into trainable parameters and the
rest exactly as it was trained. `load_config` reads a run's saved `config.json`, including
configs saved before the `xla` section existed (their `train.xla_options` string is migrated).
"""

from __future__ import annotations

import json
import pathlib
import re
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from vision_banana import sharding

#: The contract keys of a batch (docs/contracts.md "Batches"), in the order the trainer and
#: the Predictor pass them.
BATCH_KEYS = ("image", "has_image", "target", "tokens", "task_id")


def resolution(config) -> tuple[int, int]:
    """(h, w) pixels the run trains and samples at: `config.data.resolution` (int or pair)."""
    res = config.data.resolution
    return (int(res), int(res)) if np.isscalar(res) else (int(res[0]), int(res[1]))


# ---------------------------------------------------------------------------------- XLA options


def parse_legacy_xla_options(text: str) -> dict[str, Any]:
    """The deprecated `train.xla_options` string ("name=value,name=value") as a dict.

    Values are parsed as bool ("true"/"false"), int, float, else kept as strings. Only for
    configs written before the `xla` section; new configs set `config.xla.<name>`.
    """
    out: dict[str, Any] = {}
    for item in filter(None, str(text).split(",")):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"train.xla_options item {item!r}: expected name=value")
        raw = raw.strip()
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        out[name.strip()] = value
    return out


def xla_options(config) -> dict[str, Any]:
    """jit `compiler_options` of every jitted function of a run: the set entries of
    `config.xla` (None = XLA's default, left out).

    A config that still sets the deprecated `train.xla_options` string (command line or an old
    config file) has it merged in, with a FutureWarning (shown to users by default); the `xla`
    section wins on a name given in both.
    """
    section = config.get("xla") or {}
    out = {str(k): v for k, v in dict(section).items() if v is not None}
    legacy = str(config.get("train", {}).get("xla_options", "") or "")
    if legacy:
        warnings.warn(f"train.xla_options={legacy!r} is deprecated; set the options in the "
                      "config's `xla` section (e.g. --config.xla.xla_backend_optimization_level=0)",
                      FutureWarning, stacklevel=2)
        out = {**parse_legacy_xla_options(legacy), **out}
    return out


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run saved as `<workdir>/config.json` (locked, as trained).

    A config saved before the `xla` section existed gets one, made from its `train.xla_options`
    string (the string is then cleared), so old workdirs restore and predict unchanged.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a training workdir")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    train = data.get("train") or {}
    if "xla" not in data:
        data["xla"] = parse_legacy_xla_options(train.get("xla_options", "") or "")
        if "xla_options" in train:
            train["xla_options"] = ""
    config = ml_collections.ConfigDict(data)
    config.lock()
    return config


# ---------------------------------------------------------------------------------- model


def trainable_filter(pattern: str):
    """nnx filter of the trained parameters.

    The model's own `TRAINABLE` filter (every `nnx.Param` outside the autoencoder), narrowed
    to the parameters whose "/"-joined path matches `pattern` (re.search; ".*" = all).
    """
    from vision_banana.models import TRAINABLE

    regex = re.compile(pattern)

    def matches(path, value) -> bool:
        del value
        return bool(regex.search("/".join(map(str, path))))

    return nnx.All(TRAINABLE, matches)


def build_model(config, *, seed: int | None = None):
    """Build the generator and split it into (graphdef, params, model_state).

    `params` are the trainable `nnx.Param`s (`config.train.trainable` regex on their path);
    `model_state` is everything else (frozen parameters, non-parameter variables). Eager
    sharding is off: shardings come from `sharding.tree_shardings` and jit `out_shardings`.
    Call under `jax.eval_shape` / `nnx.eval_shape` for the abstract version.
    """
    from vision_banana.models.generator import build_generator

    with nnx.use_eager_sharding(False):
        model = build_generator(config.model, rngs=nnx.Rngs(int(config.seed if seed is None
                                                                 else seed)))
    graphdef, params, model_state = nnx.split(
        model, trainable_filter(config.train.trainable), ...)
    return graphdef, params, model_state


def abstract_model(config):
    """(graphdef, abstract params, abstract model_state, tokenizer); no memory is allocated."""
    from vision_banana.models.generator import build_generator

    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: build_generator(config.model, rngs=nnx.Rngs(0)))
    graphdef, params, model_state = nnx.split(
        model, trainable_filter(config.train.trainable), ...)
    if not jax.tree.leaves(params):
        raise ValueError(f"config.train.trainable={config.train.trainable!r} matches no "
                         f"parameter of the generator")
    return graphdef, params, model_state, model.tokenizer


def make_sample_fn(graphdef, rules, flow_config, *, num_steps: int, guidance: float,
                   cfg_scale: float, mode: str, compiler_options: dict | None = None):
    """jitted (params, model_state, batch, keys (B,)) -> uint8 (B, H, W, 3), per example.

    The sampler sees one example at a time (vmap); the vmapped axis is sharded over the
    `batch` rule's mesh axes, and inside the vmap the logical `batch` axis is unsharded.
    """
    from vision_banana import flow

    batch_axes = sharding.batch_spec(rules)[0]
    batch_axes = (batch_axes,) if isinstance(batch_axes, str) else batch_axes
    inner_rules = tuple((n, None if n == "batch" else a) for n, a in sharding.activation_rules(
        rules))

    def one(params, model_state, example, key):
        model = nnx.merge(graphdef, params, model_state)
        example = jax.tree.map(lambda x: x[None], example)
        return flow.sample(model, example, key, num_steps=num_steps, guidance=guidance,
                           cfg_scale=cfg_scale if cfg_scale > 0 else None, mode=mode,
                           config=flow_config)[0]

    vmapped = jax.vmap(one, in_axes=(None, None, 0, 0),
                       spmd_axis_name=batch_axes if batch_axes else None)

    def fn(params, model_state, batch, keys):
        with nnx.logical_axis_rules(inner_rules):
            return vmapped(params, model_state, batch, keys)

    return jax.jit(fn, compiler_options=compiler_options or None)
