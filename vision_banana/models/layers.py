"""Building blocks of the Flux transformer, numerically equal to Black Forest Labs' reference.

Reference: github.com/black-forest-labs/flux, `src/flux/modules/layers.py` and `src/flux/math.py`.
Each class here carries the name and parameter layout of its BFL counterpart so that a public
state dict maps 1:1 onto the NNX tree (PyTorch `weight` (out, in) -> NNX `kernel` (in, out)).

Layouts: tokens are (B, S, D) (batch, sequence, features); attention works in (B, S, H, Dh)
(heads after sequence, as `jax.nn.dot_product_attention` expects), which flattens to BFL's
`B L (H D)` order. Compute dtype (`dtype`, e.g. bfloat16) is separate from the parameter dtype
(`param_dtype`, float32 master weights); norms, RoPE and softmax run in float32 as BFL does.

Sharding: every parameter carries logical axis names (`out_sharding` metadata, what
`nnx.with_partitioning` sets) from {embed, mlp, heads, vocab, latent, cond, norm, None}; the
trainer maps them onto mesh axes with a rule table (`nnx.logical_axis_rules`). Activations are
constrained with `constrain(x, ("batch", "length", "embed"))`, a no-op outside a mesh.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import spmd as core_spmd

Dtype = Any
LogicalNames = tuple[str | None, ...]

# BFL constants (modules/layers.py): RMSNorm / LayerNorm epsilon, timestep embedding width.
NORM_EPS = 1e-6
TIME_EMBED_DIM = 256


# ----------------------------------------------------------------------------------------------
# Parameter keys
# ----------------------------------------------------------------------------------------------


class ParamKeys:
    """Parameter-init key stream: `params()` returns `fold_in(root, i)` for i = 0, 1, 2, ...

    Stands in for `nnx.Rngs` when building modules (the NNX layers only call
    `rngs.params()`). The counter is a Python int, not an `RngCount` variable: in flax 0.12 /
    jax 0.10 every variable update under a trace asks the tracer for `.sharding`, whose error
    message walks the whole trace, so building the 11.9B Flux under `nnx.eval_shape` with
    `nnx.Rngs` took 12 s (40 s with VAE) instead of 1.5 s.
    """

    def __init__(self, root: jax.Array):
        self.root = root
        self._counter = itertools.count()

    def params(self) -> jax.Array:
        return jax.random.fold_in(self.root, next(self._counter))


def param_keys(rngs: "nnx.Rngs | ParamKeys") -> ParamKeys:
    """One key drawn from `rngs` (a single RngCount update), expanded into a `ParamKeys`."""
    return rngs if isinstance(rngs, ParamKeys) else ParamKeys(rngs.params())


# ----------------------------------------------------------------------------------------------
# Sharding helpers
# ----------------------------------------------------------------------------------------------


def _mesh_active() -> bool:
    return not jax.sharding.get_abstract_mesh().empty


def sharding_metadata(names: LogicalNames) -> dict[str, Any]:
    """Variable metadata naming the logical axes of a parameter.

    Flax 0.12 shards annotated variables eagerly at creation when a mesh is set, and refuses to
    create them with no mesh at all. Eager sharding is therefore requested only when a mesh and
    a logical rule table are both active (the trainer's sharded init); everywhere else (CPU
    tests, `nnx.eval_shape` without a mesh) the names are kept as metadata only and resolved
    later with `nnx.get_partition_spec` under the rule table.
    """
    eager = (nnx.using_eager_sharding() and _mesh_active()
             and bool(core_spmd.get_logical_axis_rules()))
    return {"out_sharding": tuple(names), "eager_sharding": eager}


def constrain(x: jax.Array, names: LogicalNames) -> jax.Array:
    """Sharding constraint on an activation by logical names (`batch`, `length`, `embed`, ...).

    No-op outside a mesh or without a rule table, so the model runs unchanged on one device.
    Names absent from the rule table are replicated (None) rather than passed through.
    """
    rules = core_spmd.get_logical_axis_rules()
    if not _mesh_active() or not rules:
        return x
    table = dict(rules)
    spec = jax.sharding.PartitionSpec(*(table.get(n) if n else None for n in names))
    if jax.sharding.get_abstract_mesh().are_all_axes_explicit:
        return jax.sharding.reshard(x, spec)
    return jax.lax.with_sharding_constraint(x, spec)


def linear(in_features: int, out_features: int, names: LogicalNames, *, rngs: nnx.Rngs,
           dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32, use_bias: bool = True,
           zero_init: bool = False) -> nnx.Linear:
    """`nnx.Linear` with logical axis names on kernel (in, out) and bias (out,).

    Initialization (only relevant when training from scratch; imported weights overwrite it):
    Xavier-uniform kernels and zero biases, or all zeros for adaLN-Zero style layers.
    """
    kernel_init = nnx.initializers.zeros_init() if zero_init else nnx.initializers.xavier_uniform()
    return nnx.Linear(
        in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
        kernel_init=kernel_init, bias_init=nnx.initializers.zeros_init(),
        kernel_metadata=sharding_metadata(names), bias_metadata=sharding_metadata(names[1:]),
        rngs=rngs)


class Sequential(nnx.List):
    """A list of callables applied in order, indexed like `torch.nn.Sequential`.

    Parameter paths are `<name>/<index>/kernel`, matching BFL's `<name>.<index>.weight` (e.g.
    `img_mlp.0`, `img_mlp.2`, `final_layer.adaLN_modulation.1`); parameter-free entries (the
    activation) keep their index as in the reference.
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self:
            x = layer(x)
        return x


def gelu_tanh(x: jax.Array) -> jax.Array:
    """`nn.GELU(approximate="tanh")` of the reference."""
    return jax.nn.gelu(x, approximate=True)


# ----------------------------------------------------------------------------------------------
# Norms
# ----------------------------------------------------------------------------------------------


def layer_norm(x: jax.Array, eps: float = NORM_EPS) -> jax.Array:
    """LayerNorm without affine parameters (`elementwise_affine=False`), statistics in float32.

    x: (..., D) any float dtype -> same shape and dtype.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class RMSNorm(nnx.Module):
    """BFL RMSNorm: `(x.float() * rsqrt(mean(x^2) + 1e-6)).to(x.dtype) * scale`.

    As in PyTorch, a bfloat16 input times a float32 scale promotes to float32 (the caller,
    `QKNorm`, casts back to the value dtype), so the scale is applied before one final rounding.
    """

    def __init__(self, dim: int, *, param_dtype: Dtype = jnp.float32):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype), **sharding_metadata(("norm",)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        rrms = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + NORM_EPS)
        return (x32 * rrms).astype(x.dtype) * self.scale[...]


class QKNorm(nnx.Module):
    """RMSNorm on queries and keys per head (`query_norm.scale`, `key_norm.scale`)."""

    def __init__(self, dim: int, *, param_dtype: Dtype = jnp.float32):
        self.query_norm = RMSNorm(dim, param_dtype=param_dtype)
        self.key_norm = RMSNorm(dim, param_dtype=param_dtype)

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.query_norm(q).astype(v.dtype), self.key_norm(k).astype(v.dtype)


# ----------------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------------


def timestep_embedding(t: jax.Array, dim: int = TIME_EMBED_DIM, max_period: float = 10000.0,
                       time_factor: float = 1000.0) -> jax.Array:
    """Sinusoidal embedding of (fractional) timesteps, `[cos, sin]` order as in BFL.

    t: (B,) float, Flux convention in [0, 1] (scaled by `time_factor` = 1000 first).
    Returns (B, dim) float32.
    """
    t = time_factor * jnp.asarray(t, jnp.float32)
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
    return emb


class MLPEmbedder(nnx.Module):
    """`in_layer` -> SiLU -> `out_layer`; embeds timesteps, guidance and the pooled text vector."""

    def __init__(self, in_dim: int, hidden_dim: int, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.in_layer = linear(in_dim, hidden_dim, ("cond", "mlp"), **kw)
        self.out_layer = linear(hidden_dim, hidden_dim, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out_layer(jax.nn.silu(self.in_layer(x)))


def rope(pos: jax.Array, dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """Rotary angles of one position axis (BFL `rope`).

    pos: (B, S) float positions. Returns (cos, sin), each (B, S, dim // 2) float32, with
    frequencies `theta ** -(2i / dim)`.
    """
    if dim % 2:
        raise ValueError(f"RoPE axis dimension must be even, got {dim}")
    # Frequencies in float64 on the host (as BFL), rounded once to float32.
    omega = jnp.asarray(1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim), jnp.float32)
    angles = pos.astype(jnp.float32)[..., None] * omega
    return jnp.cos(angles), jnp.sin(angles)


class EmbedND(nnx.Module):
    """Multi-axis RoPE (BFL `EmbedND`): one rotary block per id axis, concatenated per head.

    ids: (B, S, n_axes) float, Flux uses (index, row, col). Returns (cos, sin), each
    (B, S, 1, sum(axes_dim) // 2) float32, broadcasting over heads in (B, S, H, Dh) layout.
    """

    def __init__(self, dim: int, theta: int, axes_dim: Sequence[int]):
        if sum(axes_dim) != dim:
            raise ValueError(f"axes_dim {tuple(axes_dim)} must sum to the head dim {dim}")
        self.dim = dim
        self.theta = theta
        self.axes_dim = tuple(axes_dim)

    def __call__(self, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        if ids.shape[-1] != len(self.axes_dim):
            raise ValueError(f"ids have {ids.shape[-1]} axes, expected {len(self.axes_dim)} "
                             f"(axes_dim={self.axes_dim})")
        parts = [rope(ids[..., i], d, self.theta) for i, d in enumerate(self.axes_dim)]
        cos = jnp.concatenate([c for c, _ in parts], axis=-1)[:, :, None, :]
        sin = jnp.concatenate([s for _, s in parts], axis=-1)[:, :, None, :]
        return cos, sin


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate consecutive feature pairs (x0, x1) -> (cos x0 - sin x1, sin x0 + cos x1).

    x: (B, S, H, Dh); cos, sin: (B, S, 1, Dh // 2). Computed in float32, returned in x.dtype
    (BFL `apply_rope`).
    """
    xp = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    out = jnp.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, pe: tuple[jax.Array, jax.Array],
              key_mask: jax.Array | None = None, implementation: str | None = None,
              query_chunk: int = 0) -> jax.Array:
    """RoPE then scaled dot-product attention (BFL `math.attention`).

    q, k, v: (B, S, H, Dh); pe: (cos, sin) from `EmbedND`; key_mask: (B, S) bool, False keys are
    ignored by every query (None attends to all, exactly as BFL). Softmax in float32.
    `implementation`: None / "xla" / "cudnn" (see `jax.nn.dot_product_attention`).
    query_chunk: with the XLA implementation, attend `query_chunk` queries at a time (each
    chunk against all keys, rematerialised in the backward pass), so only one chunk's
    (B, H, chunk, S) logits and probabilities are alive instead of the whole (B, H, S, S)
    (629 MB in float32 per example at 2560 tokens x 24 heads). Every query row's softmax is
    the same computation, so the output equals the unchunked one. 0, or a chunk that does not
    divide S, attends all queries at once. Ignored by "cudnn" (flash attention never
    materialises the logits).
    Returns (B, S, H * Dh) in v.dtype.
    """
    cos, sin = pe
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    mask = None if key_mask is None else key_mask[:, None, None, :].astype(bool)
    b, s = q.shape[:2]
    if implementation == "cudnn" or not query_chunk or s % query_chunk or s <= query_chunk:
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
        return out.reshape(b, s, -1)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one(q_chunk):  # (B, chunk, H, Dh) against all keys
        return jax.nn.dot_product_attention(q_chunk, k, v, mask=mask,
                                            implementation=implementation)

    chunks = q.reshape(b, s // query_chunk, query_chunk, *q.shape[2:]).swapaxes(0, 1)
    out = jax.lax.map(one, chunks)  # (n_chunks, B, chunk, H, Dh)
    return out.swapaxes(0, 1).reshape(b, s, -1)


# ----------------------------------------------------------------------------------------------
# Modulation
# ----------------------------------------------------------------------------------------------


class ModulationOut(tuple):
    """(shift, scale, gate), each (B, 1, D)."""

    @property
    def shift(self) -> jax.Array:
        return self[0]

    @property
    def scale(self) -> jax.Array:
        return self[1]

    @property
    def gate(self) -> jax.Array:
        return self[2]


class Modulation(nnx.Module):
    """adaLN modulation from the conditioning vector (BFL `Modulation`, parameter `lin`).

    vec: (B, D) -> one (double=False) or two (double=True) `ModulationOut`s of (B, 1, D). The
    layer is zero-initialised (adaLN-Zero) so fresh blocks start as the identity.
    """

    def __init__(self, dim: int, double: bool, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
                 param_dtype: Dtype = jnp.float32):
        self.is_double = double
        self.multiplier = 6 if double else 3
        self.lin = linear(dim, self.multiplier * dim, ("embed", "mlp"), rngs=rngs, dtype=dtype,
                          param_dtype=param_dtype, zero_init=True)

    def __call__(self, vec: jax.Array) -> tuple[ModulationOut, ModulationOut | None]:
        out = jnp.split(self.lin(jax.nn.silu(vec))[:, None, :], self.multiplier, axis=-1)
        return (ModulationOut(out[:3]), ModulationOut(out[3:]) if self.is_double else None)


def modulate(x: jax.Array, mod: ModulationOut) -> jax.Array:
    """`(1 + scale) * LayerNorm(x) + shift`, the pre-norm of every Flux block."""
    return (1 + mod.scale) * layer_norm(x) + mod.shift


# Rematerialisation policies of a transformer block (`jax.checkpoint` policies: what the
# backward pass may keep from the forward; everything else is recomputed). Ordered from most
# memory / least recompute to least memory / most recompute:
#   none            no checkpoint: every intermediate of every block is kept
#   dots            keep every matmul output, attention logits included (recompute the rest)
#   dots_no_batch   keep the projections' outputs (matmuls without batch dimensions), recompute
#                   attention (its logits are the largest intermediates: heads x S x S)
#   full            keep only each block's inputs: recompute the whole block
#   offload         as dots_no_batch, the kept projections moved to host memory (pinned_host)
#                   and back for the backward pass; saves device memory on TPU / GPU (it
#                   compiles on CPU, where host and device memory are the same)
REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "offload": jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
}
REMAT_NAMES = ("none",) + tuple(REMAT_POLICIES)


def check_remat(remat: str) -> str:
    """Validate a remat name: "none" or a key of `REMAT_POLICIES`."""
    if remat != "none" and remat not in REMAT_POLICIES:
        raise ValueError(f"remat={remat!r}; expected 'none' or one of "
                         f"{', '.join(map(repr, REMAT_POLICIES))}")
    return remat


def checkpointed(fn: Callable, remat: str, *, prevent_cse: bool = True) -> Callable:
    """`jax.checkpoint(fn)` with the named policy ("none" returns fn unchanged).

    `fn` must be a pure function of arrays (pytrees): blocks are run as
    `fn(block_state, *inputs) = nnx.merge(graphdef, block_state)(*inputs)`, never through
    `nnx.remat` on a module, whose write-back of the block's Variables fails when some of them
    are traced at another level (the frozen base weights of a LoRA model: "Cannot mutate Param
    from a different trace level"). prevent_cse=False inside `jax.lax.scan` (as JAX advises:
    the loop already prevents the common-subexpression elimination that would undo remat).
    """
    if check_remat(remat) == "none":
        return fn
    return jax.checkpoint(fn, policy=REMAT_POLICIES[remat], prevent_cse=prevent_cse)


def maybe_remat(fn: Callable, remat: str) -> Callable:
    """Wrap a block call in `nnx.remat` with the named policy ("none" returns fn unchanged).

    Kept for callers outside the Flux transformer; the transformer uses `checkpointed`.
    """
    if check_remat(remat) == "none":
        return fn
    return nnx.remat(fn, policy=REMAT_POLICIES[remat])
