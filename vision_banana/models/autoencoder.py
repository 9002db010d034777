"""Pixel <-> latent autoencoders: a lossless patch autoencoder and the Flux AutoencoderKL.

Both take images float32 (B, H, W, 3) in [-1, 1] (NHWC) and produce latents (B, h, w, C):

- `PatchAutoencoder`: space-to-depth by `patch_size` p (h = H/p, C = 3 p^2), then an affine
  normalisation `(x - shift) * scale`. No parameters, exactly invertible; for tiny CPU models and
  for pixel-space training where no pretrained VAE is available.
- `AutoencoderKL`: the Flux VAE (Black Forest Labs `src/flux/modules/autoencoder.py`), block for
  block and name for name (`encoder/down/0/block/1/conv2/kernel` <-> PyTorch
  `encoder.down.0.block.1.conv2.weight` permuted (O, I, kh, kw) -> (kh, kw, I, O)), 16 latent
  channels at 8x downsampling with the checkpoint's shift and scaling factors.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vision_banana.models.layers import Dtype, param_keys, sharding_metadata


class PatchAutoencoder(nnx.Module):
    """Lossless space-to-depth autoencoder.

    encode: (B, H, W, 3) -> (B, H/p, W/p, 3 p^2), channel order (py, px, c) (row-major patch).
    The affine `(x - shift_factor) * scale_factor` brings pixels in [-1, 1] (std about 0.5 on
    natural images) to roughly unit variance; powers of two keep the round trip exact.
    """

    def __init__(self, patch_size: int, scale_factor: float = 2.0, shift_factor: float = 0.0):
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        self.patch_size = int(patch_size)
        self.scale_factor = float(scale_factor)
        self.shift_factor = float(shift_factor)
        self.latent_channels = 3 * self.patch_size ** 2
        self.downsample = self.patch_size

    def encode(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """images (B, H, W, 3) float in [-1, 1] -> latents (B, H/p, W/p, 3 p^2) float32.

        `key` is accepted for interface parity with `AutoencoderKL` and unused (deterministic).
        """
        b, h, w, c = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {(h, w)} is not divisible by patch_size {p}")
        x = images.astype(jnp.float32).reshape(b, h // p, p, w // p, p, c)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // p, w // p, p * p * c)
        return (x - self.shift_factor) * self.scale_factor

    def decode(self, latents: jax.Array) -> jax.Array:
        """latents (B, h, w, 3 p^2) -> images (B, h p, w p, 3) float32 (unclipped)."""
        b, h, w, c = latents.shape
        p = self.patch_size
        if c != self.latent_channels:
            raise ValueError(f"latents have {c} channels, expected {self.latent_channels}")
        x = latents.astype(jnp.float32) / self.scale_factor + self.shift_factor
        x = x.reshape(b, h, w, p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, h * p, w * p, 3)


@dataclasses.dataclass(frozen=True)
class AutoEncoderParams:
    """BFL `AutoEncoderParams`. Flux: resolution 256, in 3, ch 128, out_ch 3, ch_mult (1,2,4,4),
    num_res_blocks 2, z_channels 16, scale_factor 0.3611, shift_factor 0.1159."""

    resolution: int
    in_channels: int
    ch: int
    out_ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    scale_factor: float
    shift_factor: float

    def __post_init__(self):
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        for m in self.ch_mult:
            if (self.ch * m) % 32:
                raise ValueError(f"AutoEncoderParams: ch * ch_mult = {self.ch * m} must be a "
                                 "multiple of 32 (GroupNorm with 32 groups)")


def _conv(cin: int, cout: int, k: int, *, rngs, dtype, param_dtype, stride: int = 1,
          padding="SAME") -> nnx.Conv:
    # Activations in the VAE are never sharded by feature; conv kernels replicate.
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=padding, dtype=dtype,
                    param_dtype=param_dtype, rngs=rngs,
                    kernel_metadata=sharding_metadata((None, None, None, None)),
                    bias_metadata=sharding_metadata((None,)))


def _group_norm(c: int, *, rngs, dtype, param_dtype) -> nnx.GroupNorm:
    # Two-pass variance as torch.nn.GroupNorm (use_fast_variance=False), eps 1e-6, 32 groups.
    return nnx.GroupNorm(c, num_groups=32, epsilon=1e-6, use_fast_variance=False, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs,
                         scale_metadata=sharding_metadata(("norm",)),
                         bias_metadata=sharding_metadata(("norm",)))


class AttnBlock(nnx.Module):
    """Single-head spatial self-attention with 1x1 `q`, `k`, `v`, `proj_out` and a residual."""

    def __init__(self, c: int, **kw):
        self.norm = _group_norm(c, **kw)
        self.q = _conv(c, c, 1, **kw)
        self.k = _conv(c, c, 1, **kw)
        self.v = _conv(c, c, 1, **kw)
        self.proj_out = _conv(c, c, 1, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        hn = self.norm(x)
        q, k, v = (f(hn).reshape(b, h * w, 1, c) for f in (self.q, self.k, self.v))
        out = jax.nn.dot_product_attention(q, k, v).reshape(b, h, w, c)
        return x + self.proj_out(out)


class ResnetBlock(nnx.Module):
    """GroupNorm-swish-conv3x3 twice, 1x1 `nin_shortcut` when the channel count changes."""

    def __init__(self, cin: int, cout: int, **kw):
        self.norm1 = _group_norm(cin, **kw)
        self.conv1 = _conv(cin, cout, 3, **kw)
        self.norm2 = _group_norm(cout, **kw)
        self.conv2 = _conv(cout, cout, 3, **kw)
        self.nin_shortcut = _conv(cin, cout, 1, **kw) if cin != cout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.swish(self.norm1(x)))
        h = self.conv2(jax.nn.swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nnx.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv (the reference's asymmetric pad)."""

    def __init__(self, c: int, **kw):
        self.conv = _conv(c, c, 3, stride=2, padding="VALID", **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))))


class Upsample(nnx.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, c: int, **kw):
        self.conv = _conv(c, c, 3, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class _Level(nnx.Module):
    """One resolution level: `block` (ResnetBlocks), `attn` (empty in Flux), and an optional
    `downsample` / `upsample`, named as the reference's anonymous `nn.Module()` containers."""

    def __init__(self, blocks: list[ResnetBlock], resample: nnx.Module | None, kind: str):
        self.block = nnx.List(blocks)
        self.attn = nnx.List([])
        setattr(self, kind, resample)
        self.kind = kind

    def resample(self, x: jax.Array) -> jax.Array:
        layer = getattr(self, self.kind)
        return x if layer is None else layer(x)


class _Mid(nnx.Module):
    def __init__(self, c: int, **kw):
        self.block_1 = ResnetBlock(c, c, **kw)
        self.attn_1 = AttnBlock(c, **kw)
        self.block_2 = ResnetBlock(c, c, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nnx.Module):
    """(B, H, W, in_channels) -> (B, H/f, W/f, 2 z_channels) moments, f = 2^(len(ch_mult)-1)."""

    def __init__(self, p: AutoEncoderParams, **kw):
        self.conv_in = _conv(p.in_channels, p.ch, 3, **kw)
        in_mult = (1,) + p.ch_mult
        down = []
        block_in = p.ch
        for i, mult in enumerate(p.ch_mult):
            block_in = p.ch * in_mult[i]
            blocks = []
            for _ in range(p.num_res_blocks):
                blocks.append(ResnetBlock(block_in, p.ch * mult, **kw))
                block_in = p.ch * mult
            last = i == len(p.ch_mult) - 1
            down.append(_Level(blocks, None if last else Downsample(block_in, **kw), "downsample"))
        self.down = nnx.List(down)
        self.mid = _Mid(block_in, **kw)
        self.norm_out = _group_norm(block_in, **kw)
        self.conv_out = _conv(block_in, 2 * p.z_channels, 3, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            h = level.resample(h)
        h = self.mid(h)
        return self.conv_out(jax.nn.swish(self.norm_out(h)))


class Decoder(nnx.Module):
    """(B, h, w, z_channels) -> (B, h f, w f, out_ch). `up[i]` is level i (index 0 = finest),
    run from the coarsest, as the reference (which prepends while building)."""

    def __init__(self, p: AutoEncoderParams, **kw):
        block_in = p.ch * p.ch_mult[-1]
        self.conv_in = _conv(p.z_channels, block_in, 3, **kw)
        self.mid = _Mid(block_in, **kw)
        up = []
        for i in reversed(range(len(p.ch_mult))):
            blocks = []
            for _ in range(p.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, p.ch * p.ch_mult[i], **kw))
                block_in = p.ch * p.ch_mult[i]
            up.insert(0, _Level(blocks, Upsample(block_in, **kw) if i else None, "upsample"))
        self.up = nnx.List(up)
        self.norm_out = _group_norm(block_in, **kw)
        self.conv_out = _conv(block_in, p.out_ch, 3, **kw)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = self.mid(self.conv_in(z))
        for level in reversed(list(self.up)):
            for block in level.block:
                h = block(h)
            h = level.resample(h)
        return self.conv_out(jax.nn.swish(self.norm_out(h)))


class AutoencoderKL(nnx.Module):
    """The Flux VAE. encode: images (B, H, W, 3) in [-1, 1] -> latents (B, H/8, W/8, 16),
    `scale_factor * (z - shift_factor)`; decode inverts the normalisation then decodes to
    (B, H, W, 3) float32 (unclipped, nominally [-1, 1])."""

    def __init__(self, params: AutoEncoderParams, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32):
        kw = dict(rngs=param_keys(rngs), dtype=dtype, param_dtype=param_dtype)
        self.params = params
        self.encoder = Encoder(params, **kw)
        self.decoder = Decoder(params, **kw)
        self.scale_factor = float(params.scale_factor)
        self.shift_factor = float(params.shift_factor)
        self.latent_channels = params.z_channels
        self.downsample = 2 ** (len(params.ch_mult) - 1)

    def encode(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Posterior mean (key None; deterministic) or a posterior sample (BFL's default
        `DiagonalGaussian(sample=True)`) when a PRNG key is given. Returns float32 latents."""
        moments = self.encoder(images).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        z = mean
        if key is not None:
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return self.scale_factor * (z - self.shift_factor)

    def decode(self, latents: jax.Array) -> jax.Array:
        z = latents.astype(jnp.float32) / self.scale_factor + self.shift_factor
        return self.decoder(z).astype(jnp.float32)
