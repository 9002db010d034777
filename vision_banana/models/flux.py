"""The Flux MMDiT transformer in Flax NNX, block for block as Black Forest Labs' reference.

Reference: github.com/black-forest-labs/flux `src/flux/model.py` (Flux, FluxParams) and
`src/flux/modules/layers.py` (DoubleStreamBlock, SingleStreamBlock, LastLayer). The NNX
parameter tree mirrors the PyTorch state dict name for name (`double_blocks/3/img_attn/qkv/kernel`
<-> `double_blocks.3.img_attn.qkv.weight` transposed), so public FLUX.1 dev / schnell / Kontext
weights import by renaming `weight` to `kernel` (transposed) only.

Additions over the reference, all off by default so the call equals BFL exactly:
- `key_mask` (B, L + N) bool: keys to ignore (absent Kontext context, text padding).
- `remat` on every block ("none" | "dots" | "dots_no_batch" | "full" | "offload", see
  `layers.REMAT_POLICIES`).
- `scan_layers`: the blocks stacked on a leading layer axis and run under `jax.lax.scan`
  (`vision_banana.models.stacking`); the parameter paths lose the layer index
  (`double_blocks/img_attn/qkv/kernel` of shape (depth, D, 3D)), the outputs are the same.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vision_banana.models import layers, stacking
from vision_banana.models.layers import Dtype


@dataclasses.dataclass(frozen=True)
class FluxParams:
    """Hyper-parameters, the same fields as BFL's `FluxParams`.

    in_channels / out_channels: token channels (16 latent channels x 2x2 packing = 64 for the
    Flux VAE); vec_in_dim: pooled text vector (CLIP-L 768); context_in_dim: text states (T5-XXL
    4096); hidden_size = num_heads * head_dim; axes_dim: RoPE dims per id axis, summing to
    head_dim; depth / depth_single_blocks: double- / single-stream block counts.
    """

    in_channels: int
    out_channels: int
    vec_in_dim: int
    context_in_dim: int
    hidden_size: int
    mlp_ratio: float
    num_heads: int
    depth: int
    depth_single_blocks: int
    axes_dim: tuple[int, ...]
    theta: int
    qkv_bias: bool
    guidance_embed: bool

    def __post_init__(self):
        object.__setattr__(self, "axes_dim", tuple(int(a) for a in self.axes_dim))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads "
                             f"{self.num_heads}")
        if sum(self.axes_dim) != self.hidden_size // self.num_heads:
            raise ValueError(f"axes_dim {self.axes_dim} must sum to the head dim "
                             f"{self.hidden_size // self.num_heads}")


class SelfAttention(nnx.Module):
    """Fused `qkv` projection, per-head QK RMSNorm (`norm`), output `proj` (BFL SelfAttention)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, *, rngs: nnx.Rngs, dtype: Dtype,
                 param_dtype: Dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.num_heads = num_heads
        self.qkv = layers.linear(dim, 3 * dim, ("embed", "heads"), use_bias=qkv_bias, **kw)
        self.norm = layers.QKNorm(dim // num_heads, param_dtype=param_dtype)
        self.proj = layers.linear(dim, dim, ("heads", "embed"), **kw)

    def split_qkv(self, qkv: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(B, L, 3D) laid out `(K H Dh)` -> normalized q, k and v, each (B, L, H, Dh)."""
        b, n, _ = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = self.norm(q, k, v)
        return q, k, v


def _mlp(hidden: int, mlp_hidden: int, kw: dict) -> layers.Sequential:
    return layers.Sequential([
        layers.linear(hidden, mlp_hidden, ("embed", "mlp"), **kw),
        layers.gelu_tanh,
        layers.linear(mlp_hidden, hidden, ("mlp", "embed"), **kw),
    ])


class DoubleStreamBlock(nnx.Module):
    """MMDiT block: separate weights per stream (img / txt), joint attention over [txt, img]."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, *,
                 rngs: nnx.Rngs, dtype: Dtype, param_dtype: Dtype, attn_impl: str | None = None,
                 attn_chunk: int = 0):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.attn_impl = attn_impl
        self.attn_chunk = int(attn_chunk)
        self.img_mod = layers.Modulation(hidden_size, double=True, **kw)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias, **kw)
        self.img_mlp = _mlp(hidden_size, mlp_hidden, kw)
        self.txt_mod = layers.Modulation(hidden_size, double=True, **kw)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias, **kw)
        self.txt_mlp = _mlp(hidden_size, mlp_hidden, kw)

    def __call__(self, img, txt, vec, pe, key_mask=None):
        """img (B, N, D), txt (B, L, D), vec (B, D) -> updated (img, txt)."""
        img_mod1, img_mod2 = self.img_mod(vec)
        txt_mod1, txt_mod2 = self.txt_mod(vec)
        img_q, img_k, img_v = self.img_attn.split_qkv(
            self.img_attn.qkv(layers.modulate(img, img_mod1)))
        txt_q, txt_k, txt_v = self.txt_attn.split_qkv(
            self.txt_attn.qkv(layers.modulate(txt, txt_mod1)))
        # Text first, as in the reference (ids and key_mask follow the same order).
        q = jnp.concatenate([txt_q, img_q], axis=1)
        k = jnp.concatenate([txt_k, img_k], axis=1)
        v = jnp.concatenate([txt_v, img_v], axis=1)
        attn = layers.attention(q, k, v, pe, key_mask, self.attn_impl, self.attn_chunk)
        n_txt = txt.shape[1]
        txt_attn, img_attn = attn[:, :n_txt], attn[:, n_txt:]

        img = img + img_mod1.gate * self.img_attn.proj(img_attn)
        img = img + img_mod2.gate * self.img_mlp(layers.modulate(img, img_mod2))
        txt = txt + txt_mod1.gate * self.txt_attn.proj(txt_attn)
        txt = txt + txt_mod2.gate * self.txt_mlp(layers.modulate(txt, txt_mod2))
        return img, txt


class SingleStreamBlock(nnx.Module):
    """Parallel attention + MLP block over the joint sequence: fused `linear1` (qkv | mlp_in),
    fused `linear2` (proj | mlp_out), QK `norm`, `modulation` (BFL SingleStreamBlock)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, *, rngs: nnx.Rngs,
                 dtype: Dtype, param_dtype: Dtype, attn_impl: str | None = None,
                 attn_chunk: int = 0):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.hidden_size = hidden_size
        self.attn_chunk = int(attn_chunk)
        self.num_heads = num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.attn_impl = attn_impl
        self.linear1 = layers.linear(hidden_size, 3 * hidden_size + self.mlp_hidden_dim,
                                     ("embed", "mlp"), **kw)
        self.linear2 = layers.linear(hidden_size + self.mlp_hidden_dim, hidden_size,
                                     ("mlp", "embed"), **kw)
        self.norm = layers.QKNorm(hidden_size // num_heads, param_dtype=param_dtype)
        self.modulation = layers.Modulation(hidden_size, double=False, **kw)

    def __call__(self, x, vec, pe, key_mask=None):
        """x (B, L + N, D), vec (B, D) -> (B, L + N, D)."""
        mod, _ = self.modulation(vec)
        h = self.linear1(layers.modulate(x, mod))
        qkv, mlp = h[..., :3 * self.hidden_size], h[..., 3 * self.hidden_size:]
        b, n, _ = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = self.norm(q, k, v)
        attn = layers.attention(q, k, v, pe, key_mask, self.attn_impl, self.attn_chunk)
        out = self.linear2(jnp.concatenate([attn, layers.gelu_tanh(mlp)], axis=-1))
        return x + mod.gate * out


class LastLayer(nnx.Module):
    """Final adaLN (`adaLN_modulation.1`, shift before scale) and projection (`linear`)."""

    def __init__(self, hidden_size: int, out_channels: int, *, rngs: nnx.Rngs, dtype: Dtype,
                 param_dtype: Dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.linear = layers.linear(hidden_size, out_channels, ("embed", "latent"), zero_init=True,
                                    **kw)
        self.adaLN_modulation = layers.Sequential([
            jax.nn.silu, layers.linear(hidden_size, 2 * hidden_size, ("embed", "mlp"),
                                       zero_init=True, **kw)])

    def __call__(self, x, vec):
        shift, scale = jnp.split(self.adaLN_modulation(vec), 2, axis=-1)
        x = (1 + scale[:, None, :]) * layers.layer_norm(x) + shift[:, None, :]
        return self.linear(x)


class Flux(nnx.Module):
    """Transformer for flow matching on token sequences (BFL `Flux`).

    Args:
      params: architecture.
      rngs: parameter initialisation.
      dtype: compute dtype (bfloat16 on accelerators); param_dtype: storage (float32 master).
      remat: rematerialisation of each block in the backward pass (`layers.REMAT_POLICIES`).
      attn_impl: `jax.nn.dot_product_attention` implementation (None = XLA, "cudnn").
      attn_chunk: queries per attention chunk (`layers.attention` query_chunk; 0 = all).
      scan_layers: stack each block list's parameters on a leading layer axis and run it under
        `jax.lax.scan` (see `vision_banana.models.stacking`). The same seed gives the same
        weights in either layout (layer i of the stack = block i of the unrolled model).
    """

    def __init__(self, params: FluxParams, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32, remat: str = "none",
                 attn_impl: str | None = None, scan_layers: bool = False, attn_chunk: int = 0):
        self.params = params
        self.dtype = dtype
        self.remat = layers.check_remat(remat)
        self.scan_layers = bool(scan_layers)
        kw = dict(rngs=layers.param_keys(rngs), dtype=dtype, param_dtype=param_dtype)
        p = params
        self.pe_embedder = layers.EmbedND(p.hidden_size // p.num_heads, p.theta, p.axes_dim)
        self.img_in = layers.linear(p.in_channels, p.hidden_size, ("latent", "embed"), **kw)
        self.time_in = layers.MLPEmbedder(layers.TIME_EMBED_DIM, p.hidden_size, **kw)
        self.vector_in = layers.MLPEmbedder(p.vec_in_dim, p.hidden_size, **kw)
        self.guidance_in = (layers.MLPEmbedder(layers.TIME_EMBED_DIM, p.hidden_size, **kw)
                            if p.guidance_embed else None)
        self.txt_in = layers.linear(p.context_in_dim, p.hidden_size, ("cond", "embed"), **kw)
        attn = dict(attn_impl=attn_impl, attn_chunk=attn_chunk)
        double = [DoubleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio, p.qkv_bias, **attn,
                                    **kw) for _ in range(p.depth)]
        single = [SingleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio, **attn, **kw)
                  for _ in range(p.depth_single_blocks)]
        if self.scan_layers:
            if not (double and single):
                raise ValueError(f"scan_layers needs depth >= 1 and depth_single_blocks >= 1, "
                                 f"got {p.depth} and {p.depth_single_blocks}")
            self.double_blocks = stacking.stack_modules(double)
            self.single_blocks = stacking.stack_modules(single)
        else:
            self.double_blocks = nnx.List(double)
            self.single_blocks = nnx.List(single)
        self.final_layer = LastLayer(p.hidden_size, p.out_channels, **kw)

    def __call__(self, img: jax.Array, img_ids: jax.Array, txt: jax.Array, txt_ids: jax.Array,
                 timesteps: jax.Array, y: jax.Array, guidance: jax.Array | None = None,
                 key_mask: jax.Array | None = None) -> jax.Array:
        """Predict the velocity of the image tokens.

        img: (B, N, in_channels) tokens; img_ids: (B, N, 3) float (index, row, col);
        txt: (B, L, context_in_dim); txt_ids: (B, L, 3) float (zeros in Flux);
        timesteps: (B,) in [0, 1], 1 = pure noise; y: (B, vec_in_dim) pooled text;
        guidance: (B,) guidance strength (guidance-distilled models only);
        key_mask: (B, L + N) bool over [txt, img] keys, None attends to all (== BFL).
        Returns (B, N, out_channels) in the compute dtype.
        """
        if img.ndim != 3 or txt.ndim != 3:
            raise ValueError(f"img and txt must be (B, S, C); got {img.shape} and {txt.shape}")
        if img.shape[-1] != self.params.in_channels:
            raise ValueError(f"img has {img.shape[-1]} channels, FluxParams.in_channels is "
                             f"{self.params.in_channels}")
        if key_mask is not None and key_mask.shape != (img.shape[0], txt.shape[1] + img.shape[1]):
            raise ValueError(f"key_mask shape {key_mask.shape}, expected "
                             f"{(img.shape[0], txt.shape[1] + img.shape[1])} (B, L + N)")
        if self.params.guidance_embed and guidance is None:
            raise ValueError("this Flux has guidance_embed=True: pass guidance (B,)")
        act = ("batch", "length", "embed")
        img = layers.constrain(self.img_in(img.astype(self.dtype)), act)
        vec = self.time_in(layers.timestep_embedding(timesteps).astype(self.dtype))
        if self.params.guidance_embed:
            vec = vec + self.guidance_in(layers.timestep_embedding(guidance).astype(self.dtype))
        vec = vec + self.vector_in(y.astype(self.dtype))
        txt = layers.constrain(self.txt_in(txt.astype(self.dtype)), act)

        pe = self.pe_embedder(jnp.concatenate([txt_ids, img_ids], axis=1))

        def double(state, img, txt, vec, pe, mask):
            img, txt = nnx.merge(double_def, state)(img, txt, vec, pe, mask)
            return layers.constrain(img, act), layers.constrain(txt, act)

        def single(state, x, vec, pe, mask):
            return layers.constrain(nnx.merge(single_def, state)(x, vec, pe, mask), act)

        if self.scan_layers:
            double_def, double_state = nnx.split(self.double_blocks)
            single_def, single_state = nnx.split(self.single_blocks)
            img, txt = self._scan(double, double_state, (img, txt), vec, pe, key_mask)
            n_txt = txt.shape[1]
            (x,) = self._scan(lambda *a: (single(*a),), single_state,
                              (jnp.concatenate([txt, img], axis=1),), vec, pe, key_mask)
            return self.final_layer(x[:, n_txt:], vec)

        run_double = layers.checkpointed(double, self.remat)
        for block in self.double_blocks:
            double_def, state = nnx.split(block)
            img, txt = run_double(state, img, txt, vec, pe, key_mask)
        n_txt = txt.shape[1]
        x = jnp.concatenate([txt, img], axis=1)
        run_single = layers.checkpointed(single, self.remat)
        for block in self.single_blocks:
            single_def, state = nnx.split(block)
            x = run_single(state, x, vec, pe, key_mask)
        return self.final_layer(x[:, n_txt:], vec)

    def _scan(self, block_fn, stacked_state, carry, vec, pe, key_mask):
        """`carry = block_fn(layer_state, *carry, vec, pe, key_mask)` for every layer of a
        stacked block list, under `jax.lax.scan`, each step rematerialised per `self.remat`."""
        step = layers.checkpointed(block_fn, self.remat, prevent_cse=False)

        def body(carry, layer_state):
            return tuple(step(layer_state, *carry, vec, pe, key_mask)), None

        carry, _ = jax.lax.scan(body, tuple(carry), stacked_state)
        return carry


def count_params(module: nnx.Module) -> int:
    """Number of parameters (works on abstract modules from `nnx.eval_shape`)."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
