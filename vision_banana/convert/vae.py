"""The Flux VAE (AutoencoderKL): diffusers `vae/` and BFL `ae.safetensors` <-> our AutoencoderKL.

Our autoencoder carries BFL's (LDM's) names, so `ae.safetensors` maps by renaming (`kernel` /
`scale` <-> `weight`, conv kernels (O, I, kh, kw) -> (kh, kw, I, O)). diffusers renames blocks
and reverses the decoder's level order (diffusers' own converter:
`diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint`):

  ours (BFL)                         diffusers
  encoder.down.i.block.j             encoder.down_blocks.i.resnets.j
                                     (nin_shortcut -> conv_shortcut)
  encoder.down.i.downsample.conv     encoder.down_blocks.i.downsamplers.0.conv
  {en,de}coder.mid.block_1 / block_2 {en,de}coder.mid_block.resnets.0 / resnets.1
  {en,de}coder.mid.attn_1.{norm,q,k,v,proj_out}
                                     mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}
                                     (1x1 convs here, Linear (O, I) there)
  decoder.up.i.block.j / upsample    decoder.up_blocks.(n-1-i).resnets.j / upsamplers.0
  {en,de}coder.norm_out              {en,de}coder.conv_norm_out
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vision_banana.convert.lazy import Rule
from vision_banana.models.autoencoder import AutoEncoderParams

# BFL's published Flux VAE normalisation (not stored in ae.safetensors).
FLUX_SCALE_FACTOR, FLUX_SHIFT_FACTOR = 0.3611, 0.1159
DIFFUSERS_CLASS = "AutoencoderKL"
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _leaf(parts: list[str], conv_kind: str) -> tuple[list[str], str]:
    leaf = parts[-1]
    if leaf == "kernel":
        return parts[:-1] + ["weight"], conv_kind
    if leaf == "scale":
        return parts[:-1] + ["weight"], "copy"
    return parts, "copy"


def bfl_rule(path: str, prefix: str = "") -> Rule:
    """Rule for one of our autoencoder paths (`encoder/down/0/block/1/conv2/kernel`), BFL names."""
    parts, kind = _leaf(path.split("/"), "conv")
    return Rule(path, (prefix + ".".join(parts),), kind)


def diffusers_rule(path: str, num_levels: int, prefix: str = "") -> Rule:
    """Rule for one of our autoencoder paths, diffusers AutoencoderKL names."""
    parts = path.split("/")
    is_attn = "attn_1" in parts
    parts, kind = _leaf(parts, "linear_as_conv" if is_attn else "conv")
    name = ".".join(parts)
    name = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", name)
    name = re.sub(r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m.group(1)) - 1}.",
                  name)
    if is_attn:
        head, sub = name.split(".mid.attn_1.")
        module, leaf = sub.rsplit(".", 1)
        name = f"{head}.mid_block.attentions.0.{_ATTN[module]}.{leaf}"
    name = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets.", name)
    name = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.",
                  name)
    up = re.match(r"^decoder\.up\.(\d+)\.(block|upsample)\.(.*)$", name)
    if up:
        level = num_levels - 1 - int(up.group(1))
        what = "resnets" if up.group(2) == "block" else "upsamplers.0"
        name = f"decoder.up_blocks.{level}.{what}.{up.group(3)}"
    name = name.replace(".nin_shortcut.", ".conv_shortcut.")
    return Rule(path, (prefix + name,), kind)


def params_from_diffusers_config(cfg: Mapping, where: str = "vae/config.json") -> AutoEncoderParams:
    """AutoEncoderParams of a diffusers AutoencoderKL config; raises on what our VAE lacks."""
    if cfg.get("_class_name", DIFFUSERS_CLASS) != DIFFUSERS_CLASS:
        raise ValueError(f"{where}: _class_name {cfg.get('_class_name')!r}, expected "
                         f"{DIFFUSERS_CLASS!r}")
    checks = {"norm_num_groups": 32, "act_fn": "silu", "use_quant_conv": False,
              "use_post_quant_conv": False, "mid_block_add_attention": True}
    for key, want in checks.items():
        if cfg.get(key, want) != want:
            raise ValueError(f"{where}: {key}={cfg[key]!r}; the Flux AutoencoderKL needs {want!r}")
    channels = [int(c) for c in cfg["block_out_channels"]]
    if any(c % channels[0] for c in channels):
        raise ValueError(f"{where}: block_out_channels {channels} are not multiples of the first")
    return AutoEncoderParams(
        resolution=int(cfg.get("sample_size", 1024)), in_channels=int(cfg.get("in_channels", 3)),
        ch=channels[0], out_ch=int(cfg.get("out_channels", 3)),
        ch_mult=tuple(c // channels[0] for c in channels),
        num_res_blocks=int(cfg.get("layers_per_block", 2)),
        z_channels=int(cfg.get("latent_channels", 16)),
        scale_factor=float(cfg.get("scaling_factor", FLUX_SCALE_FACTOR)),
        shift_factor=float(cfg.get("shift_factor") or 0.0))


def diffusers_config(p: AutoEncoderParams) -> dict:
    """`vae/config.json` for AutoEncoderParams."""
    channels = [p.ch * m for m in p.ch_mult]
    return {"_class_name": DIFFUSERS_CLASS, "_diffusers_version": "0.30.0",
            "in_channels": p.in_channels, "out_channels": p.out_ch,
            "down_block_types": ["DownEncoderBlock2D"] * len(channels),
            "up_block_types": ["UpDecoderBlock2D"] * len(channels),
            "block_out_channels": channels, "layers_per_block": p.num_res_blocks,
            "act_fn": "silu", "latent_channels": p.z_channels, "norm_num_groups": 32,
            "sample_size": p.resolution, "scaling_factor": p.scale_factor,
            "shift_factor": p.shift_factor, "use_quant_conv": False,
            "use_post_quant_conv": False, "mid_block_add_attention": True, "force_upcast": True}


def params_from_bfl(ckpt: Mapping, prefix: str = "", scale_factor: float = FLUX_SCALE_FACTOR,
                    shift_factor: float = FLUX_SHIFT_FACTOR) -> AutoEncoderParams:
    """AutoEncoderParams of an `ae.safetensors` from its shapes (the normalisation factors are
    not stored there: BFL's Flux values by default)."""
    ch, in_ch = ckpt[prefix + "encoder.conv_in.weight"].shape[:2]
    levels = sorted({int(m.group(1)) for k in ckpt
                     if (m := re.match(re.escape(prefix) + r"encoder\.down\.(\d+)\.", k))})
    mult, blocks = [], 0
    for i in levels:
        idx = {int(m.group(1)) for k in ckpt
               if (m := re.match(re.escape(prefix) + rf"encoder\.down\.{i}\.block\.(\d+)\.", k))}
        blocks = max(idx) + 1
        mult.append(ckpt[prefix + f"encoder.down.{i}.block.{blocks - 1}.conv2.weight"].shape[0]
                    // ch)
    return AutoEncoderParams(
        resolution=256, in_channels=in_ch, ch=ch,
        out_ch=ckpt[prefix + "decoder.conv_out.weight"].shape[0], ch_mult=tuple(mult),
        num_res_blocks=blocks, z_channels=ckpt[prefix + "decoder.conv_in.weight"].shape[1],
        scale_factor=scale_factor, shift_factor=shift_factor)
