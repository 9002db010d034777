"""Text conditioning: a byte-level tokenizer and small trainable encoder (tiny and from-scratch
configs), and the frozen T5 + CLIP pair of public Flux checkpoints (`T5ClipTextEncoder`).

Prompts carry exact colors ("#ff8000", "(255, 128, 0)") and JSON mappings, so a byte
vocabulary is used instead of a learned one: nothing to download, every prompt encodable, and
digits are seen one by one. Public Flux checkpoints use frozen T5-XXL / CLIP-L encoders instead,
imported by `vision_banana.convert`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vision_banana.models import layers
from vision_banana.models.clip import CLIPTextModel, CLIPTextParams
from vision_banana.models.layers import Dtype
from vision_banana.models.t5 import T5Encoder, T5Params

PAD_ID = 0
VOCAB_SIZE = 257  # 256 byte values shifted by one, 0 = padding


class ByteTokenizer:
    """UTF-8 bytes + 1 (0 = padding), right-padded / truncated to `max_length`.

    Called on a batch of prompts, returns int32 (B, max_length). Truncation cuts bytes, so the
    tail of a very long prompt is lost: size `max_length` to the task's longest prompt.
    """

    def __init__(self, max_length: int):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = int(max_length)

    # Value semantics: the tokenizer is a static field of the Generator's graph definition, so
    # two generators built from one config must compare equal (jit cache, checkpoint restore).
    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.max_length == self.max_length

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.max_length))

    def __repr__(self) -> str:
        return f"ByteTokenizer(max_length={self.max_length})"

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        if isinstance(prompts, str):
            raise TypeError("ByteTokenizer expects a sequence of prompts, got a single str")
        out = np.zeros((len(prompts), self.max_length), np.int32)
        for i, prompt in enumerate(prompts):
            ids = np.frombuffer(prompt.encode("utf-8"), np.uint8)[: self.max_length]
            out[i, : ids.size] = ids.astype(np.int32) + 1
        return out

    def decode(self, tokens: np.ndarray) -> list[str]:
        """Inverse of `__call__` (padding dropped; a cut multi-byte character is replaced)."""
        tokens = np.asarray(tokens)
        return [bytes((row[row > 0] - 1).astype(np.uint8)).decode("utf-8", errors="replace")
                for row in tokens.reshape(-1, tokens.shape[-1])]


class _EncoderBlock(nnx.Module):
    """Pre-LayerNorm bidirectional transformer block with a padding mask."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, *, rngs: nnx.Rngs,
                 dtype: Dtype, param_dtype: Dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.num_heads = num_heads
        self.norm1 = nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype,
                                   rngs=rngs, scale_metadata=layers.sharding_metadata(("norm",)),
                                   bias_metadata=layers.sharding_metadata(("norm",)))
        self.qkv = layers.linear(width, 3 * width, ("embed", "heads"), **kw)
        self.proj = layers.linear(width, width, ("heads", "embed"), **kw)
        self.norm2 = nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype,
                                   rngs=rngs, scale_metadata=layers.sharding_metadata(("norm",)),
                                   bias_metadata=layers.sharding_metadata(("norm",)))
        self.mlp = layers.Sequential([
            layers.linear(width, int(width * mlp_ratio), ("embed", "mlp"), **kw),
            layers.gelu_tanh,
            layers.linear(int(width * mlp_ratio), width, ("mlp", "embed"), **kw)])

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        # An all-padding row (empty prompt) gets uniform attention, not NaN: the XLA path fills
        # masked logits with a large finite negative value.
        attn = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2],
                                            mask=mask[:, None, None, :])
        x = x + self.proj(attn.reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class ByteTextEncoder(nnx.Module):
    """Small transformer over byte tokens.

    tokens: int32 (B, L), 0 = padding. Returns (states (B, L, width) in the compute dtype, the
    Flux `txt`; pooled (B, pooled_dim), the Flux `y`: masked mean of the final states through a
    linear projection; an empty prompt pools to the projection bias).
    `depth=0` is a plain embedding lookup (used as a stand-in encoder in full-size configs).
    """

    def __init__(self, *, width: int, depth: int, num_heads: int, max_length: int,
                 pooled_dim: int, mlp_ratio: float = 4.0, rngs: nnx.Rngs,
                 dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
        if width % num_heads:
            raise ValueError(f"text encoder width {width} not divisible by num_heads {num_heads}")
        rngs = layers.param_keys(rngs)
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.max_length = int(max_length)
        self.dtype = dtype
        self.embed = nnx.Embed(VOCAB_SIZE, width, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                               embedding_init=nnx.initializers.normal(0.02),
                               embedding_metadata=layers.sharding_metadata(("vocab", "embed")))
        self.pos_embed = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (self.max_length, width), param_dtype),
            **layers.sharding_metadata((None, "embed")))
        self.blocks = nnx.List([_EncoderBlock(width, num_heads, mlp_ratio, **kw)
                                for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype,
                                  rngs=rngs, scale_metadata=layers.sharding_metadata(("norm",)),
                                  bias_metadata=layers.sharding_metadata(("norm",)))
        self.pool_proj = layers.linear(width, pooled_dim, ("embed", "cond"), **kw)

    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        if tokens.ndim != 2 or tokens.shape[1] > self.max_length:
            raise ValueError(f"tokens shape {tokens.shape}, expected (B, L <= {self.max_length})")
        mask = tokens != PAD_ID
        x = self.embed(tokens) + self.pos_embed[: tokens.shape[1]].astype(self.dtype)
        x = layers.constrain(x, ("batch", "length", "embed"))
        for block in self.blocks:
            x = block(x, mask)
        states = self.norm(x)
        w = mask.astype(jnp.float32)[..., None]
        pooled = (states.astype(jnp.float32) * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
        return states, self.pool_proj(pooled.astype(self.dtype))


# ----------------------------------------------------------------------------------------------
# Frozen T5 + CLIP conditioning of public Flux checkpoints
# ----------------------------------------------------------------------------------------------


class PromptCache(nnx.Variable):
    """Encoded prompts of a fixed prompt set: model state, neither trained nor a `Param`."""


class T5ClipTextEncoder(nnx.Module):
    """FLUX.1 conditioning: T5 token states (`txt`) and the CLIP pooled vector (`y`).

    tokens: int32 (B, t5_max_length + clip_max_length), the T5 ids then the CLIP ids, as
    `vision_banana.convert.tokenizers.FluxTokenizer` makes them (0 = padding in both halves;
    CLIP's own padding after the end token is rewritten to 0, which changes nothing: CLIP is
    causal and pooled at the end token). A row of all zeros (a prompt dropped for
    classifier-free guidance, docs/contracts.md) is encoded as the empty prompt "", exactly
    what diffusers' pipelines compute for "".
    Returns (txt (B, t5_max_length, t5.d_model), y (B, clip.hidden_size)) in `dtype`.

    T5 runs over every position without a mask (as FLUX's pipeline). Both encoders are frozen
    (excluded from `generator.TRAINABLE`).

    Prompt cache (optional, `prompt_cache` slots > 0): `fill_prompt_cache(tokens)` stores the
    encodings of a fixed prompt set; a batch whose prompts are all cached is served from it
    (one `lax.cond`), any other batch is encoded.
    """

    def __init__(self, *, t5: dict, clip: dict, t5_max_length: int, clip_max_length: int,
                 t5_eos_id: int, clip_bos_id: int, clip_eos_id: int, prompt_cache: int = 0,
                 rngs: nnx.Rngs, dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
        rngs = layers.param_keys(rngs)
        self.t5 = T5Encoder(T5Params(**t5), rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.clip = CLIPTextModel(CLIPTextParams(**clip), rngs=rngs, dtype=dtype,
                                  param_dtype=param_dtype)
        if clip_max_length > self.clip.params.max_position_embeddings:
            raise ValueError(f"clip_max_length {clip_max_length} exceeds CLIP's "
                             f"{self.clip.params.max_position_embeddings} positions")
        self.t5_max_length, self.clip_max_length = int(t5_max_length), int(clip_max_length)
        self.dtype = dtype
        self.empty_tokens = tuple(
            [int(t5_eos_id)] + [0] * (self.t5_max_length - 1)
            + [int(clip_bos_id), int(clip_eos_id)] + [0] * (self.clip_max_length - 2))
        length = self.t5_max_length + self.clip_max_length
        n, d_txt, d_y = int(prompt_cache), self.t5.params.d_model, self.clip.params.hidden_size
        self.cache_size = n
        if n > 0:
            self.cache_tokens = PromptCache(jnp.zeros((n, length), jnp.int32))
            self.cache_txt = PromptCache(jnp.zeros((n, self.t5_max_length, d_txt), dtype),
                                         **layers.sharding_metadata((None, None, "embed")))
            self.cache_y = PromptCache(jnp.zeros((n, d_y), dtype))
            self.cache_used = PromptCache(jnp.zeros((n,), bool))

    @property
    def length(self) -> int:
        return self.t5_max_length + self.clip_max_length

    def encode(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Run both encoders (no cache, no empty-prompt substitution)."""
        txt = self.t5(tokens[:, :self.t5_max_length])
        _, pooled = self.clip(tokens[:, self.t5_max_length:])
        return txt.astype(self.dtype), pooled.astype(self.dtype)

    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens shape {tokens.shape}, expected (B, {self.length}) = T5 "
                             f"{self.t5_max_length} + CLIP {self.clip_max_length} ids")
        empty = jnp.all(tokens == PAD_ID, axis=1, keepdims=True)
        tokens = jnp.where(empty, jnp.asarray(self.empty_tokens, tokens.dtype)[None], tokens)
        if self.cache_size == 0:
            return self.encode(tokens)
        match = (jnp.all(tokens[:, None, :] == self.cache_tokens[...][None], axis=-1)
                 & self.cache_used[...][None])
        slot = jnp.argmax(match, axis=1)
        return jax.lax.cond(jnp.all(jnp.any(match, axis=1)),
                            lambda: (self.cache_txt[...][slot], self.cache_y[...][slot]),
                            lambda: self.encode(tokens))

    def fill_prompt_cache(self, tokens) -> None:
        """Encode int32 (P, length) token rows (P <= prompt_cache slots) into the cache; slots
        past P are marked unused. Call on a materialized encoder (eagerly, or inside nnx.jit)."""
        tokens = jnp.asarray(tokens, jnp.int32)
        n = self.cache_size
        if tokens.ndim != 2 or tokens.shape[0] > n or tokens.shape[1] != self.length:
            raise ValueError(f"prompt cache holds {n} rows of {self.length} tokens; got "
                             f"{tokens.shape}")
        p = tokens.shape[0]
        txt, y = self.encode(tokens)
        self.cache_tokens[...] = self.cache_tokens[...].at[:p].set(tokens)
        self.cache_txt[...] = self.cache_txt[...].at[:p].set(txt)
        self.cache_y[...] = self.cache_y[...].at[:p].set(y)
        self.cache_used[...] = jnp.arange(n) < p
