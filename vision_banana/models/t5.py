"""T5 encoder (the FLUX.1 text encoder T5-XXL v1.1) in Flax NNX, numerically equal to
`transformers.T5EncoderModel`.

The parameter tree mirrors the Hugging Face state dict name for name
(`block/3/layer/0/SelfAttention/q/kernel` <-> `encoder.block.3.layer.0.SelfAttention.q.weight`
transposed; `shared/embedding` <-> `shared.weight`), so `vision_banana.convert.t5` maps it by
renaming. T5 specifics kept exactly: RMS layer norm without mean or bias, no 1/sqrt(d) scaling of
attention logits, a learned relative-position bias (bucketed, bidirectional) computed in the
first block and shared by all blocks, gated-GELU (tanh approximation) feed-forward for v1.1.

Layouts: tokens int32 (B, L); states (B, L, d_model); attention in (B, L, H, d_kv).
Padding: FLUX's pipeline runs T5 *without* an attention mask over 512 (dev) / 256 (schnell)
padded positions, so `mask=None` attends to every position, pads included, as it does.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vision_banana.models import layers
from vision_banana.models.layers import Dtype

# transformers ACT2FN names used by T5 configs.
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Params:
    """The `transformers.T5Config` fields the encoder uses (T5-XXL v1.1: vocab 32128, d_model
    4096, d_kv 64, d_ff 10240, 24 layers, 64 heads, 32 buckets up to distance 128, eps 1e-6,
    feed_forward_proj "gated-gelu")."""

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def activation(self) -> str:
        # transformers maps "gated-gelu" to the tanh approximation ("gelu_new"), for v1.1.
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    def __post_init__(self):
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"T5 feed_forward_proj={self.feed_forward_proj!r}; expected "
                             "'<act>' or 'gated-<act>'")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"T5 activation {self.activation!r} not in {sorted(ACTIVATIONS)}")


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(L, L) int32 bucket of (key position - query position), bidirectional (T5 encoder).

    Host-side numpy in float32, operation for operation as transformers'
    `T5Attention._relative_position_bucket` (the truncation of the log-spaced buckets depends
    on float32 rounding at exact powers of two, so the precision must match).
    """
    pos = np.arange(length, dtype=np.int64)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    rel = np.abs(rel)
    max_exact = half // 2
    is_small = rel < max_exact
    with np.errstate(divide="ignore"):
        large = (np.log(rel.astype(np.float32) / np.float32(max_exact))
                 / np.float32(math.log(max_distance / max_exact))
                 * np.float32(half - max_exact))
    large = np.minimum(max_exact + np.where(is_small, 0, large).astype(np.int64), half - 1)
    return (buckets + np.where(is_small, rel, large)).astype(np.int32)


class T5LayerNorm(nnx.Module):
    """RMS norm without mean subtraction or bias: `weight * x / sqrt(mean(x^2) + eps)` (float32
    statistics, result in x's dtype)."""

    def __init__(self, dim: int, eps: float, *, param_dtype: Dtype):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype),
                                **layers.sharding_metadata(("norm",)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        return (self.weight[...].astype(jnp.float32) * (x32 * jax.lax.rsqrt(var + self.eps))
                ).astype(x.dtype)


def _linear(cin: int, cout: int, names, kw) -> nnx.Linear:
    return layers.linear(cin, cout, names, use_bias=False, **kw)


class T5Attention(nnx.Module):
    """Self-attention `q`, `k`, `v`, `o` (no biases, no logit scaling) and, in the first block,
    the `relative_attention_bias` table (num_buckets, num_heads)."""

    def __init__(self, p: T5Params, has_bias: bool, kw: dict):
        inner = p.num_heads * p.d_kv
        self.p = p
        self.q = _linear(p.d_model, inner, ("embed", "heads"), kw)
        self.k = _linear(p.d_model, inner, ("embed", "heads"), kw)
        self.v = _linear(p.d_model, inner, ("embed", "heads"), kw)
        self.o = _linear(inner, p.d_model, ("heads", "embed"), kw)
        self.relative_attention_bias = (
            nnx.Embed(p.relative_attention_num_buckets, p.num_heads, dtype=jnp.float32,
                      param_dtype=kw["param_dtype"], rngs=kw["rngs"],
                      embedding_init=nnx.initializers.normal(0.02),
                      embedding_metadata=layers.sharding_metadata((None, None)))
            if has_bias else None)

    def position_bias(self, length: int) -> jax.Array:
        """(1, H, L, L) float32 additive bias of the attention logits."""
        buckets = relative_position_buckets(length, self.p.relative_attention_num_buckets,
                                            self.p.relative_attention_max_distance)
        values = self.relative_attention_bias(jnp.asarray(buckets))  # (L, L, H)
        return values.astype(jnp.float32).transpose(2, 0, 1)[None]

    def __call__(self, x: jax.Array, bias: jax.Array, mask: jax.Array | None) -> jax.Array:
        b, n, _ = x.shape
        shape = (b, n, self.p.num_heads, self.p.d_kv)
        q, k, v = (f(x).reshape(shape) for f in (self.q, self.k, self.v))
        out = jax.nn.dot_product_attention(
            q, k, v, bias=bias.astype(q.dtype), scale=1.0,
            mask=None if mask is None else mask[:, None, None, :])
        return self.o(out.reshape(b, n, -1))


class T5LayerSelfAttention(nnx.Module):
    def __init__(self, p: T5Params, has_bias: bool, kw: dict):
        self.SelfAttention = T5Attention(p, has_bias, kw)
        self.layer_norm = T5LayerNorm(p.d_model, p.layer_norm_epsilon,
                                      param_dtype=kw["param_dtype"])

    def __call__(self, x, bias, mask):
        return x + self.SelfAttention(self.layer_norm(x), bias, mask)


class T5DenseReluDense(nnx.Module):
    """`wi_0`, `wi_1`, `wo` (gated: act(wi_0 x) * wi_1 x) or `wi`, `wo` (plain: act(wi x))."""

    def __init__(self, p: T5Params, kw: dict):
        self.act = ACTIVATIONS[p.activation]
        self.gated = p.is_gated
        if self.gated:
            self.wi_0 = _linear(p.d_model, p.d_ff, ("embed", "mlp"), kw)
            self.wi_1 = _linear(p.d_model, p.d_ff, ("embed", "mlp"), kw)
        else:
            self.wi = _linear(p.d_model, p.d_ff, ("embed", "mlp"), kw)
        self.wo = _linear(p.d_ff, p.d_model, ("mlp", "embed"), kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.act(self.wi_0(x)) * self.wi_1(x) if self.gated else self.act(self.wi(x))
        return self.wo(h)


class T5LayerFF(nnx.Module):
    def __init__(self, p: T5Params, kw: dict):
        self.DenseReluDense = T5DenseReluDense(p, kw)
        self.layer_norm = T5LayerNorm(p.d_model, p.layer_norm_epsilon,
                                      param_dtype=kw["param_dtype"])

    def __call__(self, x):
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nnx.Module):
    """`layer/0` self-attention, `layer/1` feed-forward (encoder blocks have no cross-attention)."""

    def __init__(self, p: T5Params, has_bias: bool, kw: dict):
        self.layer = nnx.List([T5LayerSelfAttention(p, has_bias, kw), T5LayerFF(p, kw)])

    def __call__(self, x, bias, mask):
        return self.layer[1](self.layer[0](x, bias, mask))


class T5Encoder(nnx.Module):
    """T5 encoder stack with the `shared` token embedding.

    tokens int32 (B, L) (0 = `<pad>`, 1 = `</s>`); mask: optional bool (B, L) of keys to attend
    (None = all, as FLUX's pipeline). Returns the final states (B, L, d_model) in `dtype`.
    """

    def __init__(self, params: T5Params, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32):
        rngs = layers.param_keys(rngs)
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.params = params
        self.dtype = dtype
        self.shared = nnx.Embed(params.vocab_size, params.d_model, dtype=dtype,
                                param_dtype=param_dtype, rngs=rngs,
                                embedding_init=nnx.initializers.normal(1.0),
                                embedding_metadata=layers.sharding_metadata(("vocab", "embed")))
        self.block = nnx.List([T5Block(params, i == 0, kw) for i in range(params.num_layers)])
        self.final_layer_norm = T5LayerNorm(params.d_model, params.layer_norm_epsilon,
                                            param_dtype=param_dtype)

    def __call__(self, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        if tokens.ndim != 2:
            raise ValueError(f"T5 tokens must be (B, L), got shape {tokens.shape}")
        x = layers.constrain(self.shared(tokens), ("batch", "length", "embed"))
        bias = self.block[0].layer[0].SelfAttention.position_bias(tokens.shape[1])
        for block in self.block:
            x = layers.constrain(block(x, bias, mask), ("batch", "length", "embed"))
        return self.final_layer_norm(x)
