"""Optimizer, learning-rate schedule and EMA of the weights.

AdamW with linear warmup then cosine decay, global-norm gradient clipping, weight decay on
matrices only (ndim >= 2: kernels and embeddings, not biases or norm scales). Weights and
optimizer moments stay float32 (master weights); the model computes in its own dtype (bf16 on
accelerators), which is the model config's business, not the optimizer's.

Config section `config.optim`:
    lr                  peak learning rate
    warmup_steps        linear warmup from 0 to `lr`
    decay_steps         cosine horizon in steps, counted from 0; -1 = `config.train.steps`
                        (set it explicitly when runs of different length must share a schedule)
    end_lr_factor       the cosine ends at lr * end_lr_factor
    b1, b2, eps         Adam moments
    weight_decay        decoupled weight decay (AdamW), on ndim >= 2 parameters
    clip_norm           global-norm clipping threshold; 0 disables clipping
    ema_decay           EMA decay per step; 0 disables the EMA
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def decay_horizon(config) -> int:
    """Cosine horizon in steps: `optim.decay_steps`, or `train.steps` when it is -1."""
    steps = int(config.optim.decay_steps)
    return int(config.train.steps) if steps < 0 else steps


def make_schedule(optim_config, decay_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step (0-based count of completed updates)."""
    lr = float(optim_config.lr)
    warmup = int(optim_config.warmup_steps)
    end = lr * float(optim_config.end_lr_factor)
    if decay_steps <= warmup:
        # No room for a cosine: warm up, then hold (a short debugging run, typically).
        if warmup == 0:
            return optax.constant_schedule(lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup, decay_steps=decay_steps,
        end_value=end)


def _decay_mask(params: Any) -> Any:
    # Same tree as params (nnx Variables kept), True where weight decay applies.
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(optim_config, decay_steps: int) -> optax.GradientTransformation:
    """clip_by_global_norm -> AdamW(schedule), weight decay masked to ndim >= 2 parameters."""
    parts = []
    if float(optim_config.clip_norm) > 0:
        parts.append(optax.clip_by_global_norm(float(optim_config.clip_norm)))
    parts.append(optax.adamw(
        make_schedule(optim_config, decay_steps),
        b1=float(optim_config.b1), b2=float(optim_config.b2), eps=float(optim_config.eps),
        weight_decay=float(optim_config.weight_decay), mask=_decay_mask))
    return optax.chain(*parts)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """ema <- decay * ema + (1 - decay) * params, in float32, leaf by leaf."""
    return jax.tree.map(
        lambda e, p: (decay * e + (1.0 - decay) * p.astype(jnp.float32)).astype(e.dtype),
        ema, params)


def global_norm(tree: Any) -> jax.Array:
    """sqrt(sum of squares) over every leaf, float32 scalar."""
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def all_finite(tree: Any) -> jax.Array:
    """bool scalar: every element of every floating leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)
