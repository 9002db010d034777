"""FLUX.1 [dev] instruction-tuned with FSDP, from its public weights (full or LoRA).

    python -m vision_banana.train --workdir=runs/flux_dev \
        --config=vision_banana/configs/flux_dev.py:ckpt=/ckpt/FLUX.1-dev,lora=16,res=512,batch=64

Options (`get_config("ckpt=...,lora=16,...")`):
  ckpt        pretrained checkpoint (a diffusers FLUX.1 folder, or BFL files plus a folder with
              the text encoders and tokenizers; comma-separated, see vision_banana.convert). The
              model config is read from it (`convert.model_config`: shapes, T5 length, token
              ids) and `init_from` imports its weights. "" = the published shapes with random
              weights and a byte-embedding stand-in text encoder: compile / memory checks only.
  lora        LoRA rank on the transformer projections (0 = full fine-tuning); only the
              adapters train (`train.trainable = lora.TRAINABLE_PATTERN`)
  lora_alpha  LoRA alpha (0 = the rank: update scale 1)
  mixture     data mixture (`data_mix.mixtures`; the embedded `synthetic_demo` needs no download)
  res, batch, steps   image size (pixels), global batch, training steps
  dtype       compute dtype (parameters stay float32 master weights)
  remat       rematerialization of each transformer block: full | dots_no_batch | dots | none
              | offload (host memory, TPU / GPU), see vision_banana.models.layers.REMAT_POLICIES
  scan        stacked transformer blocks under jax.lax.scan (model.scan_layers, default on):
              per-layer just-in-time weight gathers; 0 = the unrolled layout of runs made
              before it existed (their checkpoints hold per-layer parameters)
  t5_len      T5 prompt tokens (0 = the model's: 512 dev / Kontext, 256 schnell)

Fine-tuning settings follow common Flux fine-tuning practice: small learning rate (1e-5 full,
1e-4 LoRA; short warmup), no weight decay, EMA 0.9999, full rematerialization, parameters and
optimizer state fully sharded over `fsdp` (all devices by default). The guidance-distilled
dev / Kontext transformers sample at guidance 3.5 and train at 1.0 (`flow.guidance`).
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base

OPTIONS = dict(ckpt="", lora=0, lora_alpha=0.0, mixture="synthetic_demo", res=512, batch=64,
               steps=20_000, dtype="bfloat16", remat="full", t5_len=0, scan=True)
VARIANTS = ("dev", "kontext", "schnell")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return make(arg, "dev")


def _model(opts, variant: str) -> ml_collections.ConfigDict:
    from vision_banana import convert, models

    if opts.ckpt:
        return convert.model_config(opts.ckpt, dtype=opts.dtype, remat=opts.remat,
                                    t5_max_length=opts.t5_len or None, scan_layers=opts.scan,
                                    attention_chunk=512)
    model = models.flux_dev_model_config()  # published shapes, byte stand-in text encoder
    model.flux.guidance_embed = variant != "schnell"
    model.dtype, model.remat, model.scan_layers = opts.dtype, opts.remat, opts.scan
    return model


def make(arg: str | None, variant: str) -> ml_collections.ConfigDict:
    """The config of FLUX.1 `variant` ("dev", "kontext", "schnell") for `get_config(arg)`."""
    from vision_banana import lora

    if variant not in VARIANTS:
        raise ValueError(f"Flux variant {variant!r}; expected one of {VARIANTS}")
    opts = base.parse_arg(arg, **OPTIONS)
    c = base.make()
    c.model = base.with_lora(_model(opts, variant), opts.lora, opts.lora_alpha or None)
    c.init_from = opts.ckpt
    c.data = base.mixture_data(opts.mixture, opts.res)
    c.train.steps = opts.steps
    c.train.global_batch_size = opts.batch
    c.train.log_every = 20
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 2
    c.train.data_workers = 16
    c.optim.lr = 1e-5
    if opts.lora:
        c.train.trainable = lora.TRAINABLE_PATTERN
        c.optim.lr = 1e-4  # adapters start at B = 0 and need larger steps than full weights
    c.optim.warmup_steps = 200
    c.optim.end_lr_factor = 0.5
    c.optim.weight_decay = 0.0
    c.optim.ema_decay = 0.9999
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.predict.batch_size = 8
    if variant == "schnell":
        # Timestep-distilled, no guidance embedding: 4 sampler steps on the unshifted schedule
        # (diffusers' schnell scheduler: shift 1, no dynamic shifting), in training too.
        c.predict.num_steps = 4
        c.flow.shift = False
    else:
        c.predict.num_steps = 28
        # FLUX.1 dev's distilled-guidance default for sampling. Training keeps flow.guidance
        # 1.0, as Flux fine-tuners do (kohya sd-scripts: 3.5 is for inference, not training).
        c.predict.guidance = 3.5
    c.evaluators = ml_collections.ConfigDict(dict(
        heldout_loss=base.evaluator(1000, num_batches=4),
        samples=base.evaluator(1000, num_examples=8),
    ))
    c.lock()
    return c
