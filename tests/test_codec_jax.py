"""The jax.numpy decoders of depth and normals equal the numpy ones, jitted, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_depth import depth_scene
from test_normals import smooth_normals

from tasks import colormaps, depth, normals


def every_colour() -> np.ndarray:
    """All 256**3 colours as a uint8 (4096, 4096, 3) image."""
    v = np.arange(256, dtype=np.uint8)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(4096, 4096, 3)


def test_depth_rainbow_every_colour():
    rgb = every_colour()
    got = np.asarray(jax.jit(depth.decode_jax)(rgb))
    np.testing.assert_array_equal(got, depth.decode(rgb))


def test_normals_every_colour():
    rgb = every_colour()
    got = np.asarray(jax.jit(normals.decode_jax)(rgb))
    np.testing.assert_array_equal(got, normals.decode(rgb))


def test_realistic_maps_and_batches():
    rng = np.random.default_rng(0)
    d_rgb = np.stack([depth.encode(depth_scene(48, 64, rng)) for _ in range(3)])  # (3, 48, 64, 3)
    n_rgb = np.stack([normals.encode(smooth_normals(48, 64, rng)) for _ in range(3)])
    np.testing.assert_array_equal(np.asarray(jax.jit(depth.decode_jax)(d_rgb)), depth.decode(d_rgb))
    got = np.asarray(jax.jit(normals.decode_jax)(n_rgb))
    np.testing.assert_array_equal(got, normals.decode(n_rgb))
    per_image = jax.jit(jax.vmap(depth.decode_jax))(d_rgb)
    np.testing.assert_array_equal(np.asarray(per_image), depth.decode(d_rgb))


def test_depth_table_path_with_positions_argument():
    # Non-default colormap/metric: the uint16 position table goes in as a jit argument.
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    positions = jnp.asarray(colormaps.nearest_table("gray"))
    fn = jax.jit(lambda x, p: depth.decode_jax(x, colormap="gray", positions=p))
    want = depth.decode(rgb, colormap="gray")
    np.testing.assert_array_equal(np.asarray(fn(rgb, positions)), want)


def test_custom_transform_parameters():
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fn = jax.jit(lambda x: depth.decode_jax(x, lam=-2.5, c=4.0))
    np.testing.assert_array_equal(np.asarray(fn(rgb)), depth.decode(rgb, lam=-2.5, c=4.0))


def test_rejects_non_uint8():
    with pytest.raises(TypeError, match="uint8"):
        depth.decode_jax(jnp.zeros((2, 2, 3), jnp.float32))
    with pytest.raises(TypeError, match="uint8"):
        normals.decode_jax(jnp.zeros((2, 2, 4), jnp.uint8))
