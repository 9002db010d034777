"""FLUX.1 transformer weights (dev, schnell, Kontext dev): diffusers and BFL names <-> our Flux.

Our `Flux` carries Black Forest Labs' names (`double_blocks/3/img_attn/qkv/kernel`), so a BFL
single file (`flux1-dev.safetensors`, `flux1-kontext-dev.safetensors`) maps by renaming
(`kernel` <-> `weight`, transposed). diffusers' `FluxTransformer2DModel` splits and renames
(its own converter: `diffusers.loaders.single_file_utils.
convert_flux_transformer_checkpoint_to_diffusers`):

  ours (BFL)                                   diffusers
  img_in / txt_in                              x_embedder / context_embedder
  time_in, vector_in, guidance_in .in/out_layer time_text_embed.{timestep,text,guidance}_embedder
                                                 .linear_1 / .linear_2
  double_blocks.i.img_mod.lin / txt_mod.lin    transformer_blocks.i.norm1.linear /
                                                 norm1_context.linear
  double_blocks.i.img_attn.qkv                 attn.to_q | to_k | to_v        (fused on outputs)
  double_blocks.i.txt_attn.qkv                 attn.add_q_proj | add_k_proj | add_v_proj
  double_blocks.i.{img,txt}_attn.norm.{query,key}_norm.scale
                                               attn.norm_q / norm_k / norm_added_q / norm_added_k
  double_blocks.i.img_attn.proj / txt_attn.proj attn.to_out.0 / attn.to_add_out
  double_blocks.i.img_mlp.0/.2, txt_mlp.0/.2   ff.net.0.proj / ff.net.2, ff_context...
  single_blocks.i.linear1                      single_transformer_blocks.i.attn.to_q | to_k | to_v
                                                 | proj_mlp                    (fused on outputs)
  single_blocks.i.linear2 / modulation.lin     proj_out / norm.linear
  single_blocks.i.norm.{query,key}_norm.scale  attn.norm_q / attn.norm_k
  final_layer.linear                           proj_out
  final_layer.adaLN_modulation.1               norm_out.linear, halves swapped: BFL (shift, scale),
                                                 diffusers' AdaLayerNormContinuous (scale, shift)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vision_banana.convert.lazy import Rule
from vision_banana.models.flux import FluxParams

# BFL's reference RoPE split for 128-dim heads; other head sizes must be given explicitly.
BFL_AXES_DIM = {128: (16, 56, 56)}
DIFFUSERS_CLASS = "FluxTransformer2DModel"


def _linear_rules(ours: str, theirs: tuple[str, ...], sizes=None, swap=False) -> dict[str, Rule]:
    return {f"{ours}/kernel": Rule(f"{ours}/kernel", tuple(f"{t}.weight" for t in theirs),
                                   "linear", swap, sizes),
            f"{ours}/bias": Rule(f"{ours}/bias", tuple(f"{t}.bias" for t in theirs),
                                 "copy", swap, sizes)}


def diffusers_rules(p: FluxParams, prefix: str = "") -> dict[str, Rule]:
    """{our path (inside the transformer): Rule} for a diffusers FluxTransformer2DModel."""
    d, mlp = p.hidden_size, int(p.hidden_size * p.mlp_ratio)
    rules: dict[str, Rule] = {}

    def lin(ours, *theirs, sizes=None, swap=False):
        rules.update(_linear_rules(ours, tuple(prefix + t for t in theirs), sizes, swap))

    def scale(ours, theirs):
        rules[ours] = Rule(ours, (prefix + theirs + ".weight",))

    lin("img_in", "x_embedder")
    lin("txt_in", "context_embedder")
    for ours, theirs in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                         ("guidance_in", "guidance_embedder")):
        if ours == "guidance_in" and not p.guidance_embed:
            continue
        lin(f"{ours}/in_layer", f"time_text_embed.{theirs}.linear_1")
        lin(f"{ours}/out_layer", f"time_text_embed.{theirs}.linear_2")
    for i in range(p.depth):
        o, t = f"double_blocks/{i}", f"transformer_blocks.{i}"
        lin(f"{o}/img_mod/lin", f"{t}.norm1.linear")
        lin(f"{o}/txt_mod/lin", f"{t}.norm1_context.linear")
        lin(f"{o}/img_attn/qkv", f"{t}.attn.to_q", f"{t}.attn.to_k", f"{t}.attn.to_v",
            sizes=(d, d, d))
        lin(f"{o}/txt_attn/qkv", f"{t}.attn.add_q_proj", f"{t}.attn.add_k_proj",
            f"{t}.attn.add_v_proj", sizes=(d, d, d))
        scale(f"{o}/img_attn/norm/query_norm/scale", f"{t}.attn.norm_q")
        scale(f"{o}/img_attn/norm/key_norm/scale", f"{t}.attn.norm_k")
        scale(f"{o}/txt_attn/norm/query_norm/scale", f"{t}.attn.norm_added_q")
        scale(f"{o}/txt_attn/norm/key_norm/scale", f"{t}.attn.norm_added_k")
        lin(f"{o}/img_attn/proj", f"{t}.attn.to_out.0")
        lin(f"{o}/txt_attn/proj", f"{t}.attn.to_add_out")
        lin(f"{o}/img_mlp/0", f"{t}.ff.net.0.proj")
        lin(f"{o}/img_mlp/2", f"{t}.ff.net.2")
        lin(f"{o}/txt_mlp/0", f"{t}.ff_context.net.0.proj")
        lin(f"{o}/txt_mlp/2", f"{t}.ff_context.net.2")
    for i in range(p.depth_single_blocks):
        o, t = f"single_blocks/{i}", f"single_transformer_blocks.{i}"
        lin(f"{o}/linear1", f"{t}.attn.to_q", f"{t}.attn.to_k", f"{t}.attn.to_v",
            f"{t}.proj_mlp", sizes=(d, d, d, mlp))
        lin(f"{o}/linear2", f"{t}.proj_out")
        scale(f"{o}/norm/query_norm/scale", f"{t}.attn.norm_q")
        scale(f"{o}/norm/key_norm/scale", f"{t}.attn.norm_k")
        lin(f"{o}/modulation/lin", f"{t}.norm.linear")
    lin("final_layer/linear", "proj_out")
    lin("final_layer/adaLN_modulation/1", "norm_out.linear", swap=True)
    return rules


def bfl_rules(p: FluxParams, prefix: str = "") -> dict[str, Rule]:
    """{our path: Rule} for BFL names (ours with '.' separators, `weight` for `kernel`)."""
    rules = {}
    for ours in diffusers_rules(p):
        parts = ours.split("/")
        leaf = parts[-1]
        name = prefix + ".".join(parts[:-1] + ["weight" if leaf == "kernel" else leaf])
        rules[ours] = Rule(ours, (name,), "linear" if leaf == "kernel" else "copy")
    return rules


def params_from_diffusers_config(cfg: Mapping, where: str = "config.json") -> FluxParams:
    """FluxParams of a diffusers `transformer/config.json`."""
    if cfg.get("_class_name", DIFFUSERS_CLASS) != DIFFUSERS_CLASS:
        raise ValueError(f"{where}: _class_name {cfg.get('_class_name')!r}, expected "
                         f"{DIFFUSERS_CLASS!r}")
    if int(cfg.get("patch_size", 1)) != 1:
        raise ValueError(f"{where}: patch_size {cfg['patch_size']} (only 1 is a Flux layout)")
    heads, head_dim = int(cfg["num_attention_heads"]), int(cfg["attention_head_dim"])
    in_ch = int(cfg.get("in_channels", 64))
    return FluxParams(
        in_channels=in_ch, out_channels=int(cfg.get("out_channels") or in_ch),
        vec_in_dim=int(cfg.get("pooled_projection_dim", 768)),
        context_in_dim=int(cfg.get("joint_attention_dim", 4096)),
        hidden_size=heads * head_dim, mlp_ratio=4.0, num_heads=heads,
        depth=int(cfg.get("num_layers", 19)),
        depth_single_blocks=int(cfg.get("num_single_layers", 38)),
        axes_dim=tuple(cfg.get("axes_dims_rope", (16, 56, 56))), theta=10_000, qkv_bias=True,
        guidance_embed=bool(cfg.get("guidance_embeds", False)))


def diffusers_config(p: FluxParams) -> dict:
    """`transformer/config.json` for our FluxParams (what `FluxTransformer2DModel` accepts)."""
    if p.mlp_ratio != 4.0 or p.theta != 10_000 or not p.qkv_bias:
        raise ValueError(f"FluxTransformer2DModel fixes mlp_ratio 4, theta 10000 and qkv biases; "
                         f"got mlp_ratio={p.mlp_ratio}, theta={p.theta}, qkv_bias={p.qkv_bias}")
    return {"_class_name": DIFFUSERS_CLASS, "_diffusers_version": "0.30.0", "patch_size": 1,
            "in_channels": p.in_channels, "out_channels": p.out_channels,
            "num_layers": p.depth, "num_single_layers": p.depth_single_blocks,
            "attention_head_dim": p.hidden_size // p.num_heads,
            "num_attention_heads": p.num_heads, "joint_attention_dim": p.context_in_dim,
            "pooled_projection_dim": p.vec_in_dim, "guidance_embeds": p.guidance_embed,
            "axes_dims_rope": list(p.axes_dim)}


def bfl_prefix(names) -> str:
    """'' or the wrapper prefix of a BFL single file ('model.diffusion_model.' in some exports)."""
    for prefix in ("", "model.diffusion_model."):
        if f"{prefix}img_in.weight" in names:
            return prefix
    raise ValueError("not a BFL Flux transformer: no 'img_in.weight' (nor with the "
                     "'model.diffusion_model.' prefix)")


def params_from_bfl(ckpt: Mapping, axes_dim=None, where: str = "checkpoint") -> FluxParams:
    """FluxParams of a BFL single file, from its tensor shapes.

    axes_dim cannot be read from weights: BFL's (16, 56, 56) for 128-dim heads, else required.
    """
    pre = bfl_prefix(ckpt)

    def shape(name):
        return ckpt[pre + name].shape

    def count(kind):
        pattern = re.compile(re.escape(pre) + kind + r"\.(\d+)\.")
        idx = {int(m.group(1)) for k in ckpt if (m := pattern.match(k))}
        return max(idx) + 1 if idx else 0

    hidden, in_ch = shape("img_in.weight")
    depth, single = count("double_blocks"), count("single_blocks")
    norm = "double_blocks.0.img_attn.norm.query_norm.scale" if depth else \
        "single_blocks.0.norm.query_norm.scale"
    head_dim = shape(norm)[0]
    if axes_dim is None:
        if head_dim not in BFL_AXES_DIM:
            raise ValueError(f"{where}: head dim {head_dim} has no standard RoPE split; pass "
                             f"axes_dim (3 even numbers summing to {head_dim})")
        axes_dim = BFL_AXES_DIM[head_dim]
    mlp = (shape("double_blocks.0.img_mlp.0.weight")[0] if depth
           else shape("single_blocks.0.linear1.weight")[0] - 3 * hidden)
    return FluxParams(
        in_channels=in_ch, out_channels=shape("final_layer.linear.weight")[0],
        vec_in_dim=shape("vector_in.in_layer.weight")[1],
        context_in_dim=shape("txt_in.weight")[1], hidden_size=hidden, mlp_ratio=mlp / hidden,
        num_heads=hidden // head_dim, depth=depth, depth_single_blocks=single,
        axes_dim=tuple(axes_dim), theta=10_000,
        qkv_bias=(pre + "double_blocks.0.img_attn.qkv.bias") in ckpt if depth else True,
        guidance_embed=(pre + "guidance_in.in_layer.weight") in ckpt)
