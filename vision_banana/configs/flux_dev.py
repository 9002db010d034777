"""FLUX.1 [dev] shapes (11.9B-parameter transformer, Flux VAE), instruction-tuned with FSDP.

The pretrained weights are imported from `init_from` (the public safetensors, by
`vision_banana.convert`); until then the model starts from random weights, which is only
useful for compile / memory checks. Options: mixture, res, batch, steps.

Fine-tuning settings follow common Flux fine-tuning practice: small constant-ish learning rate
(1e-5, short warmup), no weight decay, EMA 0.9999, full rematerialization, parameters and
optimizer state fully sharded over `fsdp` (all devices by default).
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = base.parse_arg(arg, mixture="synthetic_demo", res=512, batch=64, steps=20_000)
    return make(opts, "flux_dev")


def make(opts, model: str) -> ml_collections.ConfigDict:
    """Shared by flux_dev and flux_kontext (they differ in the model config only)."""
    from vision_banana import models

    c = base.make()
    c.model = {"flux_dev": models.flux_dev_model_config,
               "flux_kontext": models.flux_kontext_model_config}[model]()
    c.data = base.mixture_data(opts.mixture, opts.res)
    c.init_from = ""
    c.train.steps = opts.steps
    c.train.global_batch_size = opts.batch
    c.train.log_every = 20
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 2
    c.train.data_workers = 16
    c.optim.lr = 1e-5
    c.optim.warmup_steps = 200
    c.optim.end_lr_factor = 0.5
    c.optim.weight_decay = 0.0
    c.optim.ema_decay = 0.9999
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.predict.num_steps = 28
    c.predict.guidance = 3.5  # FLUX.1 dev's distilled-guidance default
    c.predict.batch_size = 8
    c.evaluators = ml_collections.ConfigDict(dict(
        heldout_loss=dict(every=1000, num_batches=4, split="validation"),
        samples=dict(every=1000, num_examples=8, split="validation"),
    ))
    c.lock()
    return c
