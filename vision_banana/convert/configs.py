"""`config.model` for a pretrained Flux checkpoint, read from the checkpoint itself.

    config.model = convert.model_config("ckpt/FLUX.1-dev")        # shapes from its config files
    config.init_from = "ckpt/FLUX.1-dev"

The transformer, VAE, T5 and CLIP shapes come from the component configs (diffusers layout) or
the tensor shapes (BFL single files); special token ids from the tokenizer files. So the same
call builds a model matching FLUX.1 dev / schnell / Kontext dev or a tiny random checkpoint.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from vision_banana.convert.layout import Layout, discover
from vision_banana.convert.load import read_params
from vision_banana.convert.tokenizers import FluxTokenizer

CLIP_MAX_LENGTH = 77


def t5_max_length_for(guidance_embed: bool) -> int:
    """FLUX's prompt length: 512 T5 tokens for the guidance-distilled dev / Kontext, 256 for
    schnell (diffusers' pipeline defaults per model card)."""
    return 512 if guidance_embed else 256


def model_config(paths: str | os.PathLike | Layout, *, dtype: str = "bfloat16",
                 param_dtype: str = "float32", remat: str = "full", attention: str = "xla",
                 context_mode: str = "sequence", t5_max_length: int | None = None,
                 prompt_cache: int = 0, lora: ml_collections.ConfigDict | None = None,
                 axes_dim=None, scan_layers: bool = False,
                 attention_chunk: int = 0) -> ml_collections.ConfigDict:
    """The generator config (`config.model`) matching the checkpoint at `paths`.

    Needs the transformer, VAE, T5, CLIP and the tokenizer folders (diffusers layout, or BFL
    files for transformer / autoencoder plus a folder with the rest). t5_max_length: default
    512 (guidance-distilled dev / Kontext) or 256 (schnell). lora: `lora.lora_config(...)`
    to train adapters. axes_dim: RoPE split for BFL files with non-128 heads. scan_layers:
    stacked transformer blocks under `jax.lax.scan` (`models.stacking`; the import reads the
    per-layer tensors into the stacks). attention_chunk: queries per attention chunk
    (`models.layers.attention`, 0 = all at once).
    """
    layout = paths if isinstance(paths, Layout) else discover(paths)
    layout.require("transformer", "vae", "t5", "clip")
    if layout.tokenizer_dir is None:
        raise FileNotFoundError(f"{', '.join(layout.sources)}: no tokenizer/ + tokenizer_2/ "
                                "folders (CLIP and T5 tokenizers)")
    flux, vae, t5, clip = (read_params(layout.components[n], axes_dim)
                           for n in ("transformer", "vae", "t5", "clip"))
    length = t5_max_length or t5_max_length_for(flux.guidance_embed)
    ids = FluxTokenizer(str(layout.tokenizer_dir), length, CLIP_MAX_LENGTH).special_ids()
    clip_dict = dataclasses.asdict(clip)  # pooling rule as transformers reads the config
    cfg = dict(
        flux=dataclasses.asdict(flux),
        autoencoder=dict(kind="kl", **dataclasses.asdict(vae)),
        text_encoder=dict(kind="t5_clip", t5=dataclasses.asdict(t5), clip=clip_dict,
                          t5_max_length=length, clip_max_length=CLIP_MAX_LENGTH,
                          tokenizer_dir=str(layout.tokenizer_dir), prompt_cache=int(prompt_cache),
                          **ids),
        context_mode=context_mode, dtype=dtype, param_dtype=param_dtype, remat=remat,
        attention=attention, scan_layers=bool(scan_layers),
        attention_chunk=int(attention_chunk))
    cfg["flux"]["axes_dim"] = tuple(cfg["flux"]["axes_dim"])
    cfg["autoencoder"]["ch_mult"] = tuple(cfg["autoencoder"]["ch_mult"])
    if lora is not None:
        cfg["lora"] = lora
    return ml_collections.ConfigDict(cfg)
