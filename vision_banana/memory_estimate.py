"""Analytic memory estimate of one Flux train step per device, to check the compiler's figure.

    est = memory_estimate.estimate(config, mesh_sizes, state_rows, text_length)
    print(memory_estimate.format_estimate(est))

The dry run prints this beside the compiled executable's own byte counts and warns when the two
totals differ by more than 50 %. Terms (bytes on one device):

  state         the exact rows of the dry run (params, optimizer, EMA, frozen state, batch)
  gradients     one float32 gradient of the trainable parameters, sharded like them (it lives
                from the backward pass to the optimizer update)
  gathered      the largest transformer block's weights, all-gathered over `data` / `fsdp`
                (sharded over `tensor` only) in the parameter dtype, with the same again for
                its unsharded gradient before the reduce-scatter (full fine-tuning only): with
                stacked blocks under a scan (`model.scan_layers`) one layer is gathered at a
                time
  residuals     what the backward pass keeps of every block, by remat policy, per token (in
                units of hidden-size activations of the compute dtype): full 1 (the block's
                input), dots_no_batch + the projection outputs, dots + the attention logits
                (heads x sequence per token) and outputs, none + the elementwise
                intermediates (norms, modulation, RoPE, softmax: about 8 more, in float32)
  working       one block's backward: its recomputed intermediates (the "none" amount of one
                layer, attention logits per query chunk when `model.attention_chunk` is set)

Tokens per device: (text length + target tokens (+ the same again for Kontext-style context
tokens, `context_mode="sequence"`)) x examples per device. The model ignores what XLA:CPU adds
on its own (it widens bfloat16 buffers to float32 and packs buffers less tightly than the TPU /
GPU compilers), which is one reason the two figures differ; with no remat ("none") the
residual term is the roughest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

WARN_RATIO = 0.5  # warn when |estimate / compiler - 1| exceeds this


@dataclasses.dataclass
class Estimate:
    """Bytes per device by term (see module docstring) and the token count behind them."""

    rows: dict[str, int]
    tokens_per_device: int
    sequence: int
    remat: str

    @property
    def total(self) -> int:
        return int(sum(self.rows.values()))


def _block_params(d: int, mlp: int, qkv_bias: bool) -> tuple[int, int]:
    """(double-stream, single-stream) block parameter counts (see models.flux)."""
    bias = 1 if qkv_bias else 0
    stream = (d * 6 * d + 6 * d) + (d * 3 * d + bias * 3 * d) + (d * d + d) \
        + (d * mlp + mlp) + (mlp * d + d)
    single = (d * (3 * d + mlp) + 3 * d + mlp) + ((d + mlp) * d + d) + (d * 3 * d + 3 * d)
    return 2 * stream, single


def _downsample(autoencoder: Mapping) -> int:
    if autoencoder["kind"] == "patch":
        return int(autoencoder["patch_size"])
    return 2 ** (len(autoencoder["ch_mult"]) - 1)


def _units(remat: str, mlp_ratio: float, heads_per_d: float, seq: int, double: bool) -> float:
    """Residual units (hidden-size activations per token) one block keeps under `remat`."""
    proj = (5 + mlp_ratio) if double else (4 + mlp_ratio)
    attention = 1 + heads_per_d * seq  # output + logits (heads x keys per query token)
    return {"full": 1.0, "dots_no_batch": 1 + proj, "offload": 1.0,
            "dots": 1 + proj + attention,
            "none": 1 + proj + attention + 8 * 2 + heads_per_d * seq * 2}[remat]


def estimate(config, mesh: Mapping[str, int], state_rows: Mapping[str, int], text_length: int
             ) -> Estimate:
    """The analytic estimate for `config` on a mesh of `mesh` sizes (data, fsdp, tensor).

    state_rows: the dry run's exact rows (params, opt_state, ema, model_state, batch; bytes on
    the most loaded device); text_length: prompt tokens per example.
    """
    model = config.model
    flux = model.flux
    d, heads = int(flux.hidden_size), int(flux.num_heads)
    mlp = int(d * float(flux.mlp_ratio))
    act = np.dtype(model.dtype).itemsize
    param_bytes = np.dtype(model.param_dtype).itemsize
    res = config.data.resolution
    h, w = (int(res), int(res)) if np.isscalar(res) else (int(res[0]), int(res[1]))
    f = 2 * _downsample(model.autoencoder)
    n_img = (h // f) * (w // f)
    seq = int(text_length) + n_img * (2 if model.context_mode == "sequence" else 1)
    batch_ways = math.prod(int(mesh[a]) for a in ("data", "fsdp"))
    per_device = max(1, int(config.train.global_batch_size) // batch_ways)
    tokens = per_device * seq
    tensor = int(mesh["tensor"])

    lora = model.get("lora")
    full_ft = not (lora is not None and int(lora.rank) > 0 and "lora" in config.train.trainable)
    double, single = _block_params(d, mlp, bool(flux.qkv_bias))
    largest = max(double if flux.depth else 0, single if flux.depth_single_blocks else 0)
    gathered = largest * param_bytes // tensor * (2 if full_ft else 1)

    remat = str(model.remat)
    heads_per_d = heads / d / tensor
    layers_units = (int(flux.depth) * _units(remat, mlp / d, heads_per_d, seq, True)
                    + int(flux.depth_single_blocks) * _units(remat, mlp / d, heads_per_d, seq,
                                                              False))
    residuals = int(layers_units * tokens * d * act)
    chunk = int(model.get("attention_chunk", 0) or 0)
    keys_seen = chunk if 0 < chunk < seq and seq % chunk == 0 else seq
    one_layer = _units("none", mlp / d, heads_per_d * keys_seen / seq, seq, True)
    working = int(one_layer * tokens * d * act)

    rows = {k: int(state_rows.get(k, 0)) for k in ("params", "opt_state", "ema", "model_state",
                                                  "batch")}
    rows.update(gradients=int(state_rows.get("params", 0)), gathered=int(gathered),
                residuals=residuals, working=working)
    return Estimate(rows=rows, tokens_per_device=tokens, sequence=seq, remat=remat)


def disagreement(estimate_total: int, compiler_total: int) -> float:
    """|estimate / compiler - 1| (inf when the compiler reports nothing)."""
    return abs(estimate_total / compiler_total - 1) if compiler_total else math.inf
