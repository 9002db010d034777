"""T5 encoder weights (FLUX's `text_encoder_2/`, transformers `T5EncoderModel`) <-> our T5Encoder.

Our tree mirrors transformers' names, so the map is a rename: `shared/embedding` <-> `shared.weight`
(transformers also stores the tied copy `encoder.embed_tokens.weight`, ignored here), every other
path `p` <-> `encoder.<p with dots>` with `kernel` <-> `weight` (transposed) and `embedding` <->
`weight` (the relative-position bias table, as is).
"""

from __future__ import annotations

from collections.abc import Mapping

from vision_banana.convert.lazy import Rule
from vision_banana.models.t5 import T5Params

# Tensors a T5EncoderModel checkpoint may carry that have no parameter of their own here.
IGNORED = ("encoder.embed_tokens.weight",)


def rule(path: str, prefix: str = "") -> Rule:
    """Rule for one of our T5 paths (`block/0/layer/0/SelfAttention/q/kernel`)."""
    if path == "shared/embedding":
        return Rule(path, (prefix + "shared.weight",))
    parts = path.split("/")
    leaf = parts[-1]
    kind = "linear" if leaf == "kernel" else "copy"
    name = ".".join(parts[:-1] + ["weight" if leaf in ("kernel", "embedding") else leaf])
    return Rule(path, (prefix + "encoder." + name,), kind)


def params_from_config(cfg: Mapping, where: str = "text_encoder_2/config.json") -> T5Params:
    """T5Params of a transformers T5 config (encoder side)."""
    try:
        return T5Params(
            vocab_size=int(cfg["vocab_size"]), d_model=int(cfg["d_model"]), d_kv=int(cfg["d_kv"]),
            d_ff=int(cfg["d_ff"]), num_layers=int(cfg["num_layers"]),
            num_heads=int(cfg["num_heads"]),
            relative_attention_num_buckets=int(cfg.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(cfg.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-6)),
            feed_forward_proj=str(cfg.get("feed_forward_proj", "relu")))
    except KeyError as e:
        raise ValueError(f"{where}: T5 config lacks {e.args[0]!r}") from None
