"""Rectified-flow objective and samplers on micro / tiny generators (CPU)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from test_models import fast_jit, micro_generator

from vision_banana import flow, models


def _batch(b=4, size=16, max_length=16, seed=0):
    rng = np.random.default_rng(seed)
    tok = models.ByteTokenizer(max_length)
    return dict(
        image=rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
        has_image=np.arange(b) % 2 == 0,
        # Smooth targets (a per-example colour ramp): learnable in a few dozen steps.
        target=np.clip(np.linspace(0, 255, size)[None, :, None, None]
                       + rng.integers(0, 128, (b, 1, 1, 3)) + np.zeros((b, size, size, 3)),
                       0, 255).astype(np.uint8),
        tokens=tok([f"generate a depth map {i}" for i in range(b)]),
        task_id=np.zeros(b, np.int32))


def test_time_shift_and_schedule_match_bfl():
    cfg = flow.flow_config()
    assert flow.resolution_mu(256, cfg) == pytest.approx(0.5)
    assert flow.resolution_mu(4096, cfg) == pytest.approx(1.15)
    t = np.linspace(0.05, 1.0, 20)
    mu = flow.resolution_mu(1024, cfg)
    ref = math.exp(mu) / (math.exp(mu) + (1 / t - 1))  # BFL sampling.time_shift, sigma = 1
    np.testing.assert_allclose(np.asarray(flow.time_shift(mu, t)), ref, rtol=1e-6)
    ts = np.asarray(flow.schedule(4, 1024, cfg))
    assert ts.shape == (5,) and ts[0] == 1.0 and ts[-1] == 0.0 and (np.diff(ts) < 0).all()
    assert (ts[1:-1] > np.linspace(1, 0, 5)[1:-1]).all()  # shifted towards noise
    cfg.shift = False
    np.testing.assert_allclose(np.asarray(flow.schedule(4, 1024, cfg)), np.linspace(1, 0, 5),
                               atol=1e-7)
    with pytest.raises(ValueError, match="num_steps"):
        flow.schedule(0, 16, cfg)
    # The loss and sampler also accept the trainer's full config, reading its `flow` section.
    full = ml_collections.ConfigDict(dict(flow=cfg, model=models.tiny_model_config()))
    assert flow._flow_section(full) is full.flow and flow._flow_section(cfg) is cfg


def test_timesteps_logit_normal_with_resolution_shift():
    cfg = flow.flow_config()
    key = jax.random.key(0)
    small = np.asarray(flow.sample_timesteps(key, 4096, 256, cfg))
    large = np.asarray(flow.sample_timesteps(key, 4096, 4096, cfg))
    assert ((small > 0) & (small < 1)).all()
    assert abs(np.median(small) - 1 / (1 + math.exp(-0.5))) < 0.03  # median = shift(0.5)
    assert np.median(large) > np.median(small)  # more tokens -> noisier timesteps


def test_training_loss_overfits_fixed_batch():
    generator = micro_generator()
    batch = jax.tree.map(jnp.asarray, _batch())
    cfg = flow.flow_config()
    cfg.uncond_prob = 0.0
    graphdef, params, rest = nnx.split(generator, models.TRAINABLE, ...)
    tx = optax.adam(3e-3)
    key = jax.random.key(0)  # fixed noise and timesteps: a deterministic objective to overfit

    @fast_jit
    def step(params, opt_state):
        def loss_fn(params):
            return flow.training_loss(nnx.merge(graphdef, params, rest), batch, key, cfg)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux

    opt_state = fast_jit(tx.init)(params)
    losses = []
    for _ in range(40):
        params, opt_state, loss, aux = step(params, opt_state)
        losses.append(float(loss))
    assert aux["per_example_loss"].shape == (4,) and aux["t"].shape == (4,)
    assert float(jnp.mean(aux["per_example_loss"])) == pytest.approx(losses[-1], rel=1e-5)
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses


def test_loss_jits_on_tiny_config():
    """Init + loss of the tiny demo model in one jit, with the trainer's batch layout."""
    cfg = models.tiny_model_config()
    batch = jax.tree.map(jnp.asarray, _batch(b=2, size=32, max_length=128))
    fc = flow.flow_config()

    @fast_jit
    def loss(batch, key):
        generator = models.build_generator(cfg, rngs=nnx.Rngs(0))
        return flow.training_loss(generator, batch, key, fc)

    value, aux = loss(batch, jax.random.key(1))
    assert value.shape == () and np.isfinite(float(value))
    assert aux["per_example_loss"].shape == (2,)
    # Fresh adaLN-Zero init predicts zero velocity: loss = E|noise - x0|^2 > 1.
    assert float(value) > 1.0


def test_sampler_deterministic_per_seed():
    generator = micro_generator(seed=3)
    batch = jax.tree.map(jnp.asarray, _batch(b=2))
    graphdef, state = nnx.split(generator)

    @fast_jit
    def run(state, key):
        g = nnx.merge(graphdef, state)
        return (flow.sample(g, batch, key, num_steps=3),
                flow.sample(g, batch, key, num_steps=1, mode="onestep"),
                flow.sample(g, batch, key, num_steps=3, cfg_scale=3.0))

    k0, k1 = jax.random.key(0), jax.random.key(1)
    (a, one_a, guided), (b, _, _), (c, one_c, _) = (
        map(np.asarray, run(state, k)) for k in (k0, k0, k1))
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # same seed, same images
    assert np.abs(a.astype(int) - c).max() > 0  # another seed, other images
    np.testing.assert_array_equal(one_a, one_c)  # perception mode ignores the seed
    assert guided.shape == a.shape and np.abs(guided.astype(int) - a).max() > 0
    with pytest.raises(ValueError, match="mode='ddim'"):
        flow.sample(generator, batch, k0, num_steps=1, mode="ddim")
