"""CLIP text encoder (the FLUX.1 pooled-text encoder, CLIP ViT-L/14's text tower) in Flax NNX,
numerically equal to `transformers.CLIPTextModel`.

The parameter tree mirrors the Hugging Face state dict (`encoder/layers/3/self_attn/q_proj/kernel`
<-> `text_model.encoder.layers.3.self_attn.q_proj.weight` transposed; LayerNorm `scale` <->
`weight`). Pre-LayerNorm causal transformer with learned absolute positions; the pooled output
is the final state at the end-of-text token. FLUX uses only the pooled output (its `y`).

Pooling follows transformers exactly: configs saved before transformers PR #24773 carry
`eos_token_id = 2` and pool at the largest token id (`pool = "argmax"`, right for the original
vocabulary where `<|endoftext|>` is the last id); newer ones pool at the first `eos_token_id`
(`pool = "eos"`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vision_banana.models import layers
from vision_banana.models.layers import Dtype

# transformers ACT2FN names used by CLIP configs.
ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class CLIPTextParams:
    """The `transformers.CLIPTextConfig` fields the text tower uses (CLIP-L: vocab 49408, hidden
    768, intermediate 3072, 12 layers, 12 heads, 77 positions, quick_gelu, eps 1e-5).
    pool: "argmax" (legacy configs, eos_token_id 2) or "eos" (first `eos_token_id`)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    pool: str = "argmax"
    eos_token_id: int = 2

    def __post_init__(self):
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"CLIP hidden_act {self.hidden_act!r} not in {sorted(ACTIVATIONS)}")
        if self.pool not in ("argmax", "eos"):
            raise ValueError(f"CLIP pool={self.pool!r}; expected 'argmax' or 'eos'")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"CLIP hidden_size {self.hidden_size} not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")


def _layer_norm(dim: int, eps: float, kw: dict) -> nnx.LayerNorm:
    # Two-pass variance as torch.nn.LayerNorm.
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, dtype=kw["dtype"],
                         param_dtype=kw["param_dtype"], rngs=kw["rngs"],
                         scale_metadata=layers.sharding_metadata(("norm",)),
                         bias_metadata=layers.sharding_metadata(("norm",)))


def _embed(n: int, dim: int, names, kw: dict) -> nnx.Embed:
    return nnx.Embed(n, dim, dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"],
                     embedding_init=nnx.initializers.normal(0.02),
                     embedding_metadata=layers.sharding_metadata(names))


class CLIPTextEmbeddings(nnx.Module):
    def __init__(self, p: CLIPTextParams, kw: dict):
        self.token_embedding = _embed(p.vocab_size, p.hidden_size, ("vocab", "embed"), kw)
        self.position_embedding = _embed(p.max_position_embeddings, p.hidden_size,
                                         (None, "embed"), kw)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return (self.token_embedding(tokens)
                + self.position_embedding(jnp.arange(tokens.shape[1]))[None])


class CLIPAttention(nnx.Module):
    def __init__(self, p: CLIPTextParams, kw: dict):
        d = p.hidden_size
        self.num_heads = p.num_attention_heads
        self.q_proj = layers.linear(d, d, ("embed", "heads"), **kw)
        self.k_proj = layers.linear(d, d, ("embed", "heads"), **kw)
        self.v_proj = layers.linear(d, d, ("embed", "heads"), **kw)
        self.out_proj = layers.linear(d, d, ("heads", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        shape = (b, n, self.num_heads, d // self.num_heads)
        q, k, v = (f(x).reshape(shape) for f in (self.q_proj, self.k_proj, self.v_proj))
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.reshape(b, n, d))


class CLIPMLP(nnx.Module):
    def __init__(self, p: CLIPTextParams, kw: dict):
        self.act = ACTIVATIONS[p.hidden_act]
        self.fc1 = layers.linear(p.hidden_size, p.intermediate_size, ("embed", "mlp"), **kw)
        self.fc2 = layers.linear(p.intermediate_size, p.hidden_size, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    def __init__(self, p: CLIPTextParams, kw: dict):
        self.self_attn = CLIPAttention(p, kw)
        self.layer_norm1 = _layer_norm(p.hidden_size, p.layer_norm_eps, kw)
        self.mlp = CLIPMLP(p, kw)
        self.layer_norm2 = _layer_norm(p.hidden_size, p.layer_norm_eps, kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
    def __init__(self, p: CLIPTextParams, kw: dict):
        self.layers = nnx.List([CLIPEncoderLayer(p, kw) for _ in range(p.num_hidden_layers)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layers.constrain(layer(x), ("batch", "length", "embed"))
        return x


class CLIPTextModel(nnx.Module):
    """CLIP text tower.

    tokens int32 (B, L), L <= max_position_embeddings (77), with a begin token first and an end
    token after the prompt (what follows it does not change the pooled output: attention is
    causal). Returns (last_hidden_state (B, L, hidden), pooled (B, hidden)) in `dtype`.
    """

    def __init__(self, params: CLIPTextParams, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32):
        kw = dict(rngs=layers.param_keys(rngs), dtype=dtype, param_dtype=param_dtype)
        self.params = params
        self.embeddings = CLIPTextEmbeddings(params, kw)
        self.encoder = CLIPEncoder(params, kw)
        self.final_layer_norm = _layer_norm(params.hidden_size, params.layer_norm_eps, kw)

    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        if tokens.ndim != 2 or tokens.shape[1] > self.params.max_position_embeddings:
            raise ValueError(f"CLIP tokens shape {tokens.shape}, expected (B, L <= "
                             f"{self.params.max_position_embeddings})")
        x = layers.constrain(self.embeddings(tokens), ("batch", "length", "embed"))
        states = self.final_layer_norm(self.encoder(x))
        if self.params.pool == "argmax":
            where = jnp.argmax(tokens, axis=-1)
        else:
            where = jnp.argmax(tokens == self.params.eos_token_id, axis=-1)
        pooled = jnp.take_along_axis(states, where[:, None, None], axis=1)[:, 0]
        return states, pooled
