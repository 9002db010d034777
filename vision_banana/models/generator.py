"""The generator bundle: autoencoder + text encoder + Flux transformer + tokenizer.

Token conventions (Flux): autoencoder latents (B, h, w, C) are packed 2x2 into tokens
(B, (h/2)(w/2), 4C) with channel order (c, ph, pw) as BFL's
`rearrange("b c (h ph) (w pw) -> b (h w) (c ph pw)")`; ids are (0, row, col) for the target
tokens, (1, row, col) for the input-image (context) tokens appended after them (Flux Kontext),
all-zero for text. Images enter as uint8 (B, H, W, 3) and leave as uint8; H and W must be
multiples of 2 x the autoencoder's downsampling factor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vision_banana.models.autoencoder import AutoencoderKL, AutoEncoderParams, PatchAutoencoder
from vision_banana.models.flux import Flux, FluxParams
from vision_banana.models.text import ByteTextEncoder, ByteTokenizer, T5ClipTextEncoder

CONTEXT_MODES = ("sequence", "channels")
# What an optimizer should update: everything but the (frozen or parameter-free) autoencoder and
# the frozen pretrained text encoders (T5 / CLIP of public Flux checkpoints). Gradients never
# reach the autoencoder (latents are stop_gradient-ed), but weight decay would.
TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.Any(nnx.PathContains("autoencoder"),
                                               nnx.PathContains("t5"),
                                               nnx.PathContains("clip"))))
TEXT_KINDS = ("byte", "t5_clip")


def _dtype(name: str):
    try:
        return jnp.dtype(name)
    except TypeError as e:
        raise ValueError(f"model dtype {name!r} is not a dtype name (float32, bfloat16)") from e


def _check_keys(section: str, cfg: dict, expected: set[str]) -> None:
    missing, unknown = expected - set(cfg), set(cfg) - expected
    if missing or unknown:
        raise ValueError(f"model.{section}: missing keys {sorted(missing)}, unknown keys "
                         f"{sorted(unknown)}; expected exactly {sorted(expected)}")


def pack(latents: jax.Array) -> jax.Array:
    """(B, h, w, C) -> (B, (h/2)(w/2), 4C), channel order (c, ph, pw) as BFL."""
    b, h, w, c = latents.shape
    x = latents.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, (h // 2) * (w // 2), 4 * c)


def unpack(tokens: jax.Array, grid_h: int, grid_w: int) -> jax.Array:
    """(B, grid_h * grid_w, 4C) -> (B, 2 grid_h, 2 grid_w, C); inverse of `pack`."""
    b, n, c4 = tokens.shape
    if n != grid_h * grid_w:
        raise ValueError(f"{n} tokens do not fill a {grid_h}x{grid_w} grid")
    x = tokens.reshape(b, grid_h, grid_w, c4 // 4, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, 2 * grid_h, 2 * grid_w, c4 // 4)


def position_ids(batch: int, grid_h: int, grid_w: int, index: int = 0) -> jax.Array:
    """(B, grid_h * grid_w, 3) float32 ids (index, row, col), row-major."""
    rows, cols = jnp.meshgrid(jnp.arange(grid_h), jnp.arange(grid_w), indexing="ij")
    ids = jnp.stack([jnp.full_like(rows, index), rows, cols], axis=-1).reshape(-1, 3)
    return jnp.broadcast_to(ids.astype(jnp.float32), (batch, grid_h * grid_w, 3))


def _build_autoencoder(cfg: dict, rngs: nnx.Rngs, dtype, param_dtype):
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind == "patch":
        _check_keys("autoencoder (kind='patch')", cfg, {"patch_size", "scale_factor",
                                                        "shift_factor"})
        return PatchAutoencoder(**cfg)
    if kind == "kl":
        _check_keys("autoencoder (kind='kl')", cfg,
                    {f.name for f in AutoEncoderParams.__dataclass_fields__.values()})
        return AutoencoderKL(AutoEncoderParams(**cfg), rngs=rngs, dtype=dtype,
                             param_dtype=param_dtype)
    raise ValueError(f"model.autoencoder.kind={kind!r}; expected 'patch' or 'kl'")


T5_CLIP_KEYS = {"t5", "clip", "t5_max_length", "clip_max_length", "t5_eos_id", "clip_bos_id",
                "clip_eos_id", "tokenizer_dir", "prompt_cache"}


def _build_text(cfg: dict, rngs: nnx.Rngs, dtype, param_dtype):
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind == "byte":
        _check_keys("text_encoder (kind='byte')", cfg,
                    {"width", "depth", "num_heads", "max_length", "pooled_dim", "mlp_ratio"})
        encoder = ByteTextEncoder(**cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        return ByteTokenizer(cfg["max_length"]), encoder, cfg["width"], cfg["pooled_dim"]
    if kind == "t5_clip":
        # Frozen T5 + CLIP of public Flux checkpoints (vision_banana.convert builds this section
        # from a checkpoint folder: `convert.model_config(path)`).
        from vision_banana.convert.tokenizers import FluxTokenizer

        _check_keys("text_encoder (kind='t5_clip')", cfg, T5_CLIP_KEYS)
        tokenizer_dir = cfg.pop("tokenizer_dir")
        encoder = T5ClipTextEncoder(**cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        tokenizer = FluxTokenizer(tokenizer_dir, cfg["t5_max_length"], cfg["clip_max_length"])
        return (tokenizer, encoder, encoder.t5.params.d_model,
                encoder.clip.params.hidden_size)
    raise ValueError(f"model.text_encoder.kind={kind!r}; expected one of {TEXT_KINDS}")


class Generator(nnx.Module):
    """Image generator conditioned on a prompt and, optionally, an input image.

    Fields: `autoencoder`, `text_encoder`, `transformer` (Flux), `tokenizer` (host-side).
    config: the trainer's `config.model` (see `vision_banana.models.tiny_model_config`).
    """

    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        dtype, param_dtype = _dtype(config.dtype), _dtype(config.param_dtype)
        if config.context_mode not in CONTEXT_MODES:
            raise ValueError(f"model.context_mode={config.context_mode!r}; expected one of "
                             f"{CONTEXT_MODES}")
        self.context_mode = config.context_mode
        self.autoencoder = _build_autoencoder(config.autoencoder.to_dict(), rngs, dtype,
                                              param_dtype)
        self.tokenizer, self.text_encoder, txt_dim, vec_dim = _build_text(
            config.text_encoder.to_dict(), rngs, dtype, param_dtype)

        flux = FluxParams(**config.flux.to_dict())
        self.token_channels = 4 * self.autoencoder.latent_channels
        expected = {
            "in_channels": self.token_channels * (2 if self.context_mode == "channels" else 1),
            "out_channels": self.token_channels, "context_in_dim": txt_dim, "vec_in_dim": vec_dim}
        for name, want in expected.items():
            if getattr(flux, name) != want:
                raise ValueError(f"model.flux.{name}={getattr(flux, name)} but the autoencoder / "
                                 f"text encoder / context_mode={self.context_mode!r} need {want}")
        self.transformer = Flux(flux, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                                remat=config.remat, attn_impl=config.attention,
                                # Absent from configs saved before stacked blocks existed:
                                # those runs' checkpoints hold the unrolled layout.
                                scan_layers=bool(config.get("scan_layers", False)),
                                attn_chunk=int(config.get("attention_chunk", 0)))
        lora_config = config.get("lora")
        if lora_config is not None and int(lora_config.rank) > 0:
            # Low-rank adapters on the transformer's projections (vision_banana.lora); the base
            # weights keep their paths, so pretrained imports and exports are unchanged.
            from vision_banana import lora

            lora.apply(self.transformer, lora_config, rngs=rngs)

    # -- conditioning ------------------------------------------------------------------------

    def encode_text(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        """tokens int32 (B, L) -> (txt (B, L, context_in_dim), y (B, vec_in_dim))."""
        return self.text_encoder(tokens)

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (rows, cols) of an H x W image; raises if H or W does not divide."""
        f = 2 * self.autoencoder.downsample
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} must be a multiple of {f} "
                             "(autoencoder downsampling x 2x2 packing)")
        return height // f, width // f

    def encode_images(self, images_uint8: jax.Array) -> jax.Array:
        """uint8 (B, H, W, 3) -> packed latent tokens (B, N, token_channels) float32.

        Latents are constants of the objective (stop_gradient): the autoencoder is not trained.
        """
        self.token_grid(*images_uint8.shape[1:3])
        x = images_uint8.astype(jnp.float32) / 127.5 - 1.0
        return jax.lax.stop_gradient(pack(self.autoencoder.encode(x)))

    def decode_tokens(self, tokens: jax.Array, height: int, width: int) -> jax.Array:
        """(B, N, token_channels) -> uint8 (B, height, width, 3), rounded and clipped."""
        x = self.autoencoder.decode(unpack(tokens.astype(jnp.float32),
                                           *self.token_grid(height, width)))
        return jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

    # -- denoiser ----------------------------------------------------------------------------

    def velocity(self, x_t: jax.Array, t: jax.Array, txt: jax.Array, y: jax.Array,
                 context: jax.Array | None = None, context_valid: jax.Array | None = None,
                 guidance: jax.Array | None = None,
                 grid_hw: tuple[int, int] | None = None) -> jax.Array:
        """Velocity (noise - data) of the target tokens, float32 (B, N, token_channels).

        x_t: (B, N, C) noisy target tokens; t: (B,) in [0, 1] (1 = noise); txt, y: from
        `encode_text`; context: (B, N, C) input-image tokens or None; context_valid: bool (B,)
        False where an example has no input image (its context is masked out of attention in
        "sequence" mode, zeroed in "channels" mode); guidance: (B,) for guidance-embedded
        transformers (default 1.0); grid_hw: token grid of the target (default: square).
        """
        b, n, _ = x_t.shape
        gh, gw = grid_hw if grid_hw is not None else _square(n)
        img_ids = position_ids(b, gh, gw, 0)
        txt_ids = jnp.zeros((b, txt.shape[1], 3), jnp.float32)
        if self.transformer.params.guidance_embed and guidance is None:
            guidance = jnp.ones((b,), jnp.float32)
        img, key_mask = x_t, None
        if self.context_mode == "channels":
            if context is None:
                context = jnp.zeros_like(x_t)
            elif context_valid is not None:
                context = context * context_valid[:, None, None].astype(context.dtype)
            img = jnp.concatenate([x_t, context.astype(x_t.dtype)], axis=-1)
        elif context is not None:
            if context.shape != x_t.shape:
                raise ValueError(f"context {context.shape} must match x_t {x_t.shape}")
            img = jnp.concatenate([x_t, context.astype(x_t.dtype)], axis=1)
            img_ids = jnp.concatenate([img_ids, position_ids(b, gh, gw, 1)], axis=1)
            if context_valid is not None:
                key_mask = jnp.concatenate([
                    jnp.ones((b, txt.shape[1] + n), bool),
                    jnp.broadcast_to(context_valid.astype(bool)[:, None], (b, n))], axis=1)
        out = self.transformer(img, img_ids, txt, txt_ids, t, y, guidance=guidance,
                               key_mask=key_mask)
        return out[:, :n].astype(jnp.float32)


def _square(n: int) -> tuple[int, int]:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{n} target tokens are not a square grid: pass grid_hw=(rows, cols)")
    return side, side


def build_generator(model_config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> Generator:
    """Build the generator described by `config.model`."""
    return Generator(model_config, rngs=rngs)
