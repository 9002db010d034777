"""Rectified-flow objective and samplers, in the Flux (Black Forest Labs) conventions.

Time runs from data (t = 0) to noise (t = 1): x_t = (1 - t) x0 + t eps, and the network
predicts the velocity v = eps - x0, so an Euler step from t to t' < t is x + (t' - t) v.
Timesteps are shifted towards noise for larger images with the Flux resolution shift:
mu = linear in the target token count N (0.5 at 256 tokens, 1.15 at 4096),
t' = e^mu / (e^mu + (1/t - 1)) (BFL `sampling.time_shift` with sigma = 1).
Training draws t from a logit-normal, shifted the same way; sampling walks the shifted grid
of `num_steps + 1` points from 1 to 0 (BFL `get_schedule`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vision_banana.models.generator import Generator


def flow_config() -> ml_collections.ConfigDict:
    """Default knobs of the objective and sampler (the trainer keeps them at `config.flow`).

    logit_mean / logit_std: t = sigmoid(N(mean, std)) before the shift (SD3 / Flux training).
    shift: apply the resolution shift; base_shift / max_shift at base_seq_len / max_seq_len
    target tokens (Flux: 0.5 / 1.15 at 256 / 4096).
    guidance: value fed to guidance-embedded transformers during training (FLUX.1 dev/Kontext).
    uncond_prob: probability of dropping the prompt (all-padding tokens), which trains the
    unconditional branch used by classifier-free guidance (`sample(cfg_scale=...)`).
    onestep_prob: probability that an example with an input image is trained on the exact query
    of the deterministic perception mode (`sample(mode="onestep", num_steps=1)`): t = 1 with
    the noise at its mean (zeros), so the network learns x0 = -v(0, 1), the conditional mean
    of the target (the single-step regression of Lotus / GenPercept). 0 keeps the pure flow
    objective; without it a zero input is a point the network never saw at t = 1.
    """
    return ml_collections.ConfigDict(dict(
        logit_mean=0.0, logit_std=1.0, shift=True, base_shift=0.5, max_shift=1.15,
        base_seq_len=256, max_seq_len=4096, guidance=1.0, uncond_prob=0.1, onestep_prob=0.0))


def resolution_mu(num_tokens: int, config: ml_collections.ConfigDict) -> float:
    """Shift exponent mu, linear in the target token count (BFL `get_lin_function`)."""
    slope = (config.max_shift - config.base_shift) / (config.max_seq_len - config.base_seq_len)
    return config.base_shift + slope * (num_tokens - config.base_seq_len)


def time_shift(mu: float, t: jax.Array) -> jax.Array:
    """t' = e^mu / (e^mu + (1/t - 1)); maps 0 -> 0 and 1 -> 1, pushes mass towards 1."""
    t = jnp.asarray(t, jnp.float32)
    # Written as e^mu t / (e^mu t + 1 - t): equal to BFL's form and finite at t = 0.
    e = math.exp(mu)
    return e * t / (e * t + (1.0 - t))


def sample_timesteps(key: jax.Array, batch: int, num_tokens: int,
                     config: ml_collections.ConfigDict) -> jax.Array:
    """(B,) float32 training timesteps in (0, 1): shifted logit-normal."""
    t = jax.nn.sigmoid(config.logit_mean + config.logit_std * jax.random.normal(key, (batch,)))
    return time_shift(resolution_mu(num_tokens, config), t) if config.shift else t


def schedule(num_steps: int, num_tokens: int, config: ml_collections.ConfigDict) -> jax.Array:
    """(num_steps + 1,) float32 timesteps from 1 down to 0 (BFL `get_schedule`)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=jnp.float32)
    return time_shift(resolution_mu(num_tokens, config), t) if config.shift else t


def _flow_section(config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
    """The flow knobs: `config` itself, or `config.flow` when given the trainer's full config."""
    if config is None:
        return flow_config()
    return config.flow if "flow" in config else config


def _conditioning(generator: Generator, batch: dict):
    """Context tokens, validity and target token grid from a batch's input images."""
    images = batch["image"]
    b, h, w, _ = images.shape
    valid = batch.get("has_image")
    valid = jnp.ones((b,), bool) if valid is None else jnp.asarray(valid, bool)
    return generator.encode_images(images), valid, generator.token_grid(h, w)


def training_loss(generator: Generator, batch: dict, key: jax.Array,
                  config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """Rectified-flow loss: mean squared error of the predicted velocity.

    batch (docs/contracts.md "Batches"): image uint8 (B, H, W, 3), has_image bool (B,),
    target uint8 (B, H, W, 3), tokens int32 (B, L); other keys are ignored. key: PRNG key.
    config: `flow_config()` (or a config holding it at `.flow`).
    Returns (scalar loss, aux) with aux["per_example_loss"] (B,) and aux["t"] (B,) float32,
    for per-task / per-timestep logging.
    """
    config = _flow_section(config)
    k_t, k_noise, k_drop = jax.random.split(key, 3)
    target = batch["target"]
    if target.shape != batch["image"].shape:
        raise ValueError(f"batch target {target.shape} and image {batch['image'].shape} differ; "
                         "they share one token grid")
    x0 = generator.encode_images(target)
    b, n, _ = x0.shape
    context, valid, grid = _conditioning(generator, batch)

    tokens = batch["tokens"]
    if config.uncond_prob > 0:
        drop = jax.random.bernoulli(k_drop, config.uncond_prob, (b,))
        tokens = jnp.where(drop[:, None], 0, tokens)
    txt, y = generator.encode_text(tokens)

    t = sample_timesteps(k_t, b, n, config)
    noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
    if config.get("onestep_prob", 0.0) > 0:
        # The one-step perception query (x_t = 0 at t = 1), for examples with an input image.
        k_t, k_one = jax.random.split(k_t)
        one = jax.random.bernoulli(k_one, config.onestep_prob, (b,)) & valid
        t = jnp.where(one, 1.0, t)
        noise = jnp.where(one[:, None, None], 0.0, noise)
    x_t = (1.0 - t[:, None, None]) * x0 + t[:, None, None] * noise
    pred = generator.velocity(x_t, t, txt, y, context, valid,
                              guidance=jnp.full((b,), config.guidance, jnp.float32), grid_hw=grid)
    per_example = jnp.mean(jnp.square(pred - (noise - x0)), axis=(1, 2))
    return jnp.mean(per_example), {"per_example_loss": per_example, "t": t}


def sample(generator: Generator, batch: dict, key: jax.Array, *, num_steps: int,
           guidance: float = 1.0, cfg_scale: float | None = None, mode: str = "euler",
           config: ml_collections.ConfigDict | None = None) -> jax.Array:
    """Generate targets for (image, prompt) pairs; uint8 (B, H, W, 3) at the input image size.

    batch: image uint8 (B, H, W, 3), tokens int32 (B, L), optional has_image bool (B,).
    mode "euler": Euler over the shifted schedule from Gaussian noise drawn with `key` (same
    key, same output). mode "onestep": the deterministic perception mode: start from the noise
    mean (zeros) instead, so `num_steps=1` is a single prediction x0 = -v(0, t=1) and more steps
    refine it; `key` is unused. guidance: distilled-guidance value for guidance-embedded
    transformers; cfg_scale: classifier-free guidance v_u + s (v_c - v_u) against the empty
    prompt (None: off). config: `flow_config()` for the schedule shift (default: Flux's).
    Jit with num_steps, mode, cfg_scale static.
    """
    if mode not in ("euler", "onestep"):
        raise ValueError(f"mode={mode!r}; expected 'euler' or 'onestep'")
    config = _flow_section(config)
    b, h, w, _ = batch["image"].shape
    context, valid, grid = _conditioning(generator, batch)
    n, c = grid[0] * grid[1], generator.token_channels
    tokens = batch["tokens"]
    if cfg_scale is not None:
        # Conditional and unconditional branches run as one doubled batch.
        tokens = jnp.concatenate([tokens, jnp.zeros_like(tokens)], axis=0)
        context, valid = jnp.concatenate([context, context]), jnp.concatenate([valid, valid])
    txt, y = generator.encode_text(tokens)
    g = jnp.full((txt.shape[0],), guidance, jnp.float32)
    ts = schedule(num_steps, n, config)

    x = (jnp.zeros((b, n, c), jnp.float32) if mode == "onestep"
         else jax.random.normal(key, (b, n, c), jnp.float32))
    graphdef, state = nnx.split(generator)

    def step(i, x):
        model = nnx.merge(graphdef, state)
        t_curr, t_prev = ts[i], ts[i + 1]
        x_in = jnp.concatenate([x, x]) if cfg_scale is not None else x
        t_vec = jnp.full((x_in.shape[0],), t_curr, jnp.float32)
        v = model.velocity(x_in, t_vec, txt, y, context, valid, guidance=g, grid_hw=grid)
        if cfg_scale is not None:
            v_cond, v_uncond = jnp.split(v, 2)
            v = v_uncond + cfg_scale * (v_cond - v_uncond)
        return x + (t_prev - t_curr) * v

    x = jax.lax.fori_loop(0, num_steps, step, x)
    return generator.decode_tokens(x, h, w)
