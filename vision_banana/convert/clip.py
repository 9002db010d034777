"""CLIP text encoder weights (FLUX's `text_encoder/`, transformers `CLIPTextModel`) <-> ours.

Our tree mirrors transformers' names: path `p` <-> `text_model.<p with dots>` with `kernel` <->
`weight` (transposed), `embedding` / LayerNorm `scale` <-> `weight`. transformers 5 saves the
same tensors without the `text_model.` prefix; both forms are read (`prefix_of`).
"""

from __future__ import annotations

from collections.abc import Mapping

from vision_banana.convert.lazy import Rule
from vision_banana.models.clip import CLIPTextParams

# Tensors a CLIPTextModel checkpoint may carry that have no parameter here (old checkpoints
# stored the position-id buffer; projection heads belong to CLIPTextModelWithProjection).
IGNORED_SUFFIXES = ("embeddings.position_ids", "text_projection.weight")


def prefix_of(names) -> str:
    """'text_model.' (transformers 4 and the FLUX repositories) or '' (transformers 5)."""
    for prefix in ("text_model.", ""):
        if f"{prefix}embeddings.token_embedding.weight" in names:
            return prefix
    raise ValueError("not a CLIP text model: no 'text_model.embeddings.token_embedding.weight'")


def rule(path: str, prefix: str = "text_model.") -> Rule:
    """Rule for one of our CLIP paths (`encoder/layers/0/self_attn/q_proj/kernel`)."""
    parts = path.split("/")
    leaf = parts[-1]
    kind = "linear" if leaf == "kernel" else "copy"
    name = ".".join(parts[:-1] + ["weight" if leaf in ("kernel", "embedding", "scale") else leaf])
    return Rule(path, (prefix + name,), kind)


def params_from_config(cfg: Mapping, where: str = "text_encoder/config.json") -> CLIPTextParams:
    """CLIPTextParams of a transformers CLIPTextConfig (or a CLIPConfig's `text_config`)."""
    cfg = cfg.get("text_config", cfg)
    eos = int(cfg.get("eos_token_id", 2))
    try:
        return CLIPTextParams(
            vocab_size=int(cfg["vocab_size"]), hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=int(cfg["num_attention_heads"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 77)),
            hidden_act=str(cfg.get("hidden_act", "quick_gelu")),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-5)),
            pool="argmax" if eos == 2 else "eos", eos_token_id=eos)
    except KeyError as e:
        raise ValueError(f"{where}: CLIP config lacks {e.args[0]!r}") from None
