"""Sampling equal to diffusers' `FluxPipeline` / `FluxKontextPipeline`, on our Generator.

The pipelines' loop, step for step:
- sigmas = linspace(1, 1/n, n) (float64, then float32), shifted by the scheduler
  (`FlowMatchEulerDiscreteScheduler`): with `use_dynamic_shifting` (dev, Kontext)
  s' = e^mu / (e^mu + (1/s - 1)), mu linear in the target token count (0.5 at 256 tokens, 1.15
  at 4096); otherwise s' = shift s / (1 + (shift - 1) s) (schnell: shift 1, unchanged); then a
  final 0 appended. These are the points of `flow.schedule` (linspace(1, 0, n + 1), shifted),
  computed in the pipeline's float32 order.
- the transformer sees t = (1000 s) / 1000 (the pipeline's timesteps divided back; rounded
  through the model dtype as the pipeline does in bfloat16), guidance (B,) = guidance_scale for
  guidance-distilled models, packed latent tokens with ids (0, row,
  col); Kontext appends the input image's tokens (VAE mode, normalized, ids (1, row, col)) and
  keeps the first N outputs (`Generator.velocity`).
- Euler: x <- x + (s_next - s) v, in float32.
- decode: unpack, z / scaling_factor + shift_factor, VAE decode, (x / 2 + 0.5) clipped to [0, 1]
  (the pipeline's `output_type="np"`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vision_banana.models.generator import Generator, unpack

# FlowMatchEulerDiscreteScheduler defaults of FLUX.1 dev / Kontext (scheduler_config.json).
DEV_SCHEDULER = dict(use_dynamic_shifting=True, shift=3.0, base_shift=0.5, max_shift=1.15,
                     base_image_seq_len=256, max_image_seq_len=4096)


def pipeline_sigmas(num_steps: int, num_tokens: int,
                    scheduler: Mapping | None = None) -> np.ndarray:
    """(num_steps + 1,) float32 sigmas of the pipeline, from 1 down to 0 (see module doc).

    scheduler: a FlowMatchEulerDiscreteScheduler config (`scheduler/scheduler_config.json`);
    default FLUX.1 dev's.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    cfg = {**DEV_SCHEDULER, **(scheduler or {})}
    for unsupported in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                        "invert_sigmas", "stochastic_sampling", "shift_terminal"):
        if cfg.get(unsupported):
            raise ValueError(f"scheduler option {unsupported}={cfg[unsupported]!r} is not "
                             "supported")
    if cfg.get("time_shift_type", "exponential") != "exponential":
        raise ValueError(f"scheduler time_shift_type={cfg['time_shift_type']!r}; expected "
                         "'exponential'")
    s = np.linspace(1.0, 1 / num_steps, num_steps).astype(np.float32)
    if cfg["use_dynamic_shifting"]:
        m = (cfg["max_shift"] - cfg["base_shift"]) / (cfg["max_image_seq_len"]
                                                      - cfg["base_image_seq_len"])
        mu = num_tokens * m + (cfg["base_shift"] - m * cfg["base_image_seq_len"])
        s = math.exp(mu) / (math.exp(mu) + (1 / s - 1) ** 1.0)
    else:
        shift = cfg["shift"]
        s = shift * s / (1 + (shift - 1) * s)
    return np.concatenate([s.astype(np.float32), np.zeros(1, np.float32)])


def _as_pipeline_time(value: jax.Array, dtype, divide: bool = True) -> jax.Array:
    """What the pipeline's transformer embeds, divided by 1000 (our Flux multiplies by 1000
    in float32): timesteps (1000 s) are cast to the model dtype, divided by 1000 and multiplied
    back in that dtype (guidance: cast, multiplied), so bfloat16 runs see the same rounded
    values as diffusers' (and BFL's) bfloat16 pipelines; float32 leaves them exact."""
    v = value.astype(dtype)
    if divide:
        v = (v / 1000).astype(dtype)
    return ((v * 1000).astype(dtype).astype(jnp.float32)) / 1000.0


def sample(generator: Generator, tokens: jax.Array, noise: jax.Array, *, height: int,
           width: int, num_steps: int, guidance: float = 3.5,
           context_images: jax.Array | None = None,
           scheduler: Mapping | None = None) -> tuple[jax.Array, jax.Array]:
    """Generate as the diffusers pipeline does, from given initial noise.

    tokens: int32 (B, L) from the generator's tokenizer; noise: float32 (B, N, C) packed latent
    tokens (the pipeline's `latents=` argument), N = (height / 2f) (width / 2f) for the
    autoencoder's factor f; context_images: uint8 (B, height, width, 3) input images for
    Kontext (None: text-to-image); guidance: `guidance_scale` (ignored by transformers without
    a guidance embedding). Jit with num_steps, height, width static.
    Returns (final latent tokens (B, N, C) float32, images float32 (B, height, width, 3) in
    [0, 1]).
    """
    b, n, _ = noise.shape
    grid = generator.token_grid(height, width)
    if grid[0] * grid[1] != n:
        raise ValueError(f"noise has {n} tokens; a {height}x{width} image has {grid}")
    sigmas = jnp.asarray(pipeline_sigmas(num_steps, n, scheduler))
    txt, y = generator.encode_text(tokens)
    context = None
    if context_images is not None:
        context = generator.encode_images(context_images)
    dt = jnp.dtype(generator.transformer.dtype)
    g = jnp.full((b,), _as_pipeline_time(jnp.float32(guidance), dt, divide=False), jnp.float32)
    graphdef, state = nnx.split(generator)

    def step(i, x):
        model = nnx.merge(graphdef, state)
        s, s_next = sigmas[i], sigmas[i + 1]
        t = jnp.full((b,), _as_pipeline_time(s * 1000.0, dt), jnp.float32)
        v = model.velocity(x, t, txt, y, context, None, guidance=g, grid_hw=grid)
        return x + (s_next - s) * v

    x = jax.lax.fori_loop(0, num_steps, step, noise.astype(jnp.float32))
    images = generator.autoencoder.decode(unpack(x, *grid))
    return x, jnp.clip(images / 2 + 0.5, 0.0, 1.0)
