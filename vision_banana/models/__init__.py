"""Generator models: Flux transformer, autoencoders, text encoder, and the model configs.

Model configs are what the trainer keeps at `config.model`:

  flux:          the FluxParams fields (see `flux.FluxParams`)
  autoencoder:   kind "patch" (patch_size, scale_factor, shift_factor) or
                 kind "kl" (the AutoEncoderParams fields)
  text_encoder:  kind "byte" (width, depth, num_heads, max_length, pooled_dim, mlp_ratio), or
                 kind "t5_clip": frozen T5 (`txt`) + CLIP (pooled `y`) of public Flux
                 checkpoints (t5, clip: `T5Params` / `CLIPTextParams` fields; t5_max_length,
                 clip_max_length, t5_eos_id, clip_bos_id, clip_eos_id, tokenizer_dir,
                 prompt_cache); `vision_banana.convert.model_config(path)` reads it from a
                 checkpoint
  lora:          optional low-rank adapters (`vision_banana.lora.lora_config`: rank, alpha,
                 patterns); absent or rank 0 = none
  context_mode:  "sequence" (Kontext: input-image tokens appended with id index 1) or
                 "channels" (input-image tokens concatenated on channels; flux.in_channels x2)
  dtype / param_dtype: compute / storage dtype names; remat: a block rematerialisation policy
                 ("none" | "dots" | "dots_no_batch" | "full" | "offload", `layers.REMAT_POLICIES`)
  scan_layers:   stack the transformer blocks and run them under `jax.lax.scan`
                 (`models.stacking`; on for the FLUX.1 configs, off for the small ones and for
                 configs saved before the key existed); attention_chunk: queries per
                 attention chunk with the XLA attention (`layers.attention` query_chunk, 0 = all
                 at once; the FLUX.1 configs use 512);
  attention:     `jax.nn.dot_product_attention` implementation: "xla" or "cudnn" (fused
                 flash attention on NVIDIA GPUs, bfloat16 / float16 only)
"""

from __future__ import annotations

import ml_collections

from vision_banana.models.autoencoder import AutoencoderKL, AutoEncoderParams, PatchAutoencoder
from vision_banana.models.clip import CLIPTextModel, CLIPTextParams
from vision_banana.models.flux import Flux, FluxParams, count_params
from vision_banana.models.generator import TRAINABLE, Generator, build_generator
from vision_banana.models.t5 import T5Encoder, T5Params
from vision_banana.models.text import ByteTextEncoder, ByteTokenizer, T5ClipTextEncoder

__all__ = [
    "AutoEncoderParams", "AutoencoderKL", "ByteTextEncoder", "ByteTokenizer", "CLIPTextModel",
    "CLIPTextParams", "Flux", "FluxParams", "Generator", "PatchAutoencoder", "T5ClipTextEncoder",
    "T5Encoder", "T5Params", "TRAINABLE", "build_generator", "count_params",
    "flux_dev_model_config", "flux_kontext_model_config", "flux_model_config",
    "small_model_config", "tiny_model_config",
]

# Published FLUX.1 VAE (ae.safetensors / diffusers AutoencoderKL config).
FLUX_VAE = dict(kind="kl", resolution=256, in_channels=3, ch=128, out_ch=3, ch_mult=(1, 2, 4, 4),
                num_res_blocks=2, z_channels=16, scale_factor=0.3611, shift_factor=0.1159)
# The FLUX.1 repositories' text encoders: T5-XXL v1.1 (text_encoder_2) and CLIP ViT-L/14's text
# tower (text_encoder, a legacy config with eos_token_id 2: pooled at the largest token id).
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu")
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
              layer_norm_eps=1e-5, pool="argmax", eos_token_id=2)
FLUX_VARIANTS = {"dev": (True, 512), "kontext": (True, 512), "schnell": (False, 256)}


def _model(flux: dict, autoencoder: dict, text_encoder: dict, **kw) -> ml_collections.ConfigDict:
    cfg = dict(flux=flux, autoencoder=autoencoder, text_encoder=text_encoder,
               context_mode="sequence", dtype="float32", param_dtype="float32", remat="none",
               attention="xla", scan_layers=False, attention_chunk=0)
    cfg.update(kw)
    return ml_collections.ConfigDict(cfg)


def tiny_model_config() -> ml_collections.ConfigDict:
    """CPU demo model (about 2.2M parameters) for 32x32 images.

    Patch autoencoder p=2 (12 channels at 16x16) + 2x2 packing -> 64 tokens of 48 channels;
    hidden 128 = 4 heads x 32 (RoPE axes 8/12/12); 2 double + 2 single blocks; byte encoder
    width 64, 2 layers, 128 bytes of prompt.
    """
    return _model(
        flux=dict(in_channels=48, out_channels=48, vec_in_dim=64, context_in_dim=64,
                  hidden_size=128, mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2,
                  axes_dim=(8, 12, 12), theta=10_000, qkv_bias=True, guidance_embed=False),
        autoencoder=dict(kind="patch", patch_size=2, scale_factor=2.0, shift_factor=0.0),
        text_encoder=dict(kind="byte", width=64, depth=2, num_heads=4, max_length=128,
                          pooled_dim=64, mlp_ratio=4.0))


def small_model_config() -> ml_collections.ConfigDict:
    """One-GPU model from scratch (about 255M parameters), for 256x256 images, bfloat16 compute.

    Pixel-space: patch autoencoder p=4 + 2x2 packing = 8x8-pixel tokens of 192 channels (1024
    target tokens at 256x256). The patch autoencoder is chosen over a reduced-width Flux VAE
    because a VAE would itself need pretraining (there is no reconstruction loss in this
    recipe), while the patch autoencoder is exact and keeps the thin colour-coded boundaries of
    perception targets. Hidden 768 = 12 heads x 64 (axes 8/28/28), 6 double + 12 single blocks,
    byte encoder width 512 x 6 layers over 512 bytes of prompt.
    """
    return _model(
        flux=dict(in_channels=192, out_channels=192, vec_in_dim=512, context_in_dim=512,
                  hidden_size=768, mlp_ratio=4.0, num_heads=12, depth=6, depth_single_blocks=12,
                  axes_dim=(8, 28, 28), theta=10_000, qkv_bias=True, guidance_embed=False),
        autoencoder=dict(kind="patch", patch_size=4, scale_factor=2.0, shift_factor=0.0),
        text_encoder=dict(kind="byte", width=512, depth=6, num_heads=8, max_length=512,
                          pooled_dim=512, mlp_ratio=4.0),
        dtype="bfloat16", remat="dots")


def flux_dev_model_config() -> ml_collections.ConfigDict:
    """FLUX.1 [dev] shapes: 11.9B-parameter transformer (hidden 3072 = 24 x 128, 19 double +
    38 single blocks, RoPE axes 16/56/56, theta 10000, guidance embedding), Flux VAE.

    The text encoder here is a byte-embedding stand-in (depth 0) with the T5-XXL / CLIP-L output
    widths (4096 / 768), so the bundle builds and compiles at full size before the T5 / CLIP
    import exists; a weight import replaces `text_encoder`.
    """
    return _model(
        flux=dict(in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096,
                  hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19,
                  depth_single_blocks=38, axes_dim=(16, 56, 56), theta=10_000, qkv_bias=True,
                  guidance_embed=True),
        autoencoder=dict(FLUX_VAE),
        text_encoder=dict(kind="byte", width=4096, depth=0, num_heads=32, max_length=512,
                          pooled_dim=768, mlp_ratio=4.0),
        dtype="bfloat16", remat="full", scan_layers=True, attention_chunk=512)


def flux_kontext_model_config() -> ml_collections.ConfigDict:
    """FLUX.1 Kontext [dev]: the dev transformer shapes with the input image given as context
    tokens (id index 1) appended after the target tokens."""
    cfg = flux_dev_model_config()
    cfg.context_mode = "sequence"
    return cfg


def flux_model_config(variant: str = "dev", checkpoint_dir: str = "") -> ml_collections.ConfigDict:
    """FLUX.1 [dev] / [schnell] / Kontext [dev] with their frozen T5-XXL + CLIP-L encoders.

    The published shapes (no file is read here: the model builds and compiles at full size
    anywhere); `checkpoint_dir` is the diffusers folder whose `tokenizer/` and `tokenizer_2/`
    the tokenizer reads on first use and from which `init_from` imports the weights. dev and
    Kontext embed guidance and take 512 T5 tokens, schnell neither (256 tokens). For any
    other checkpoint (e.g. a tiny test one) use `vision_banana.convert.model_config(path)`,
    which reads the shapes from the checkpoint.
    """
    if variant not in FLUX_VARIANTS:
        raise ValueError(f"Flux variant {variant!r}; expected one of {sorted(FLUX_VARIANTS)}")
    guidance, t5_length = FLUX_VARIANTS[variant]
    cfg = flux_dev_model_config()
    cfg.flux.guidance_embed = guidance
    cfg.text_encoder = ml_collections.ConfigDict(dict(
        kind="t5_clip", t5=dict(T5_XXL), clip=dict(CLIP_L), t5_max_length=t5_length,
        clip_max_length=77, t5_eos_id=1, clip_bos_id=49406, clip_eos_id=49407,
        tokenizer_dir=str(checkpoint_dir), prompt_cache=0))
    return cfg
