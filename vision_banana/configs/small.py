"""One GPU, from scratch: the ~255M-parameter pixel-space generator at 256x256, bf16 compute.

Options (`get_config("mixture=synthetic_demo,res=256,batch=32")`): the data mixture by name
(`data_mix.mixtures`), image size, global batch.
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = base.parse_arg(arg, mixture="synthetic_demo", res=256, batch=32, steps=100_000)
    from vision_banana.models import small_model_config

    c = base.make()
    c.model = base.with_lora(small_model_config())
    c.data = base.mixture_data(opts.mixture, opts.res)
    c.train.steps = opts.steps
    c.train.global_batch_size = opts.batch
    c.train.log_every = 50
    c.train.checkpoint_every = 2000
    c.train.data_workers = 8
    c.optim.lr = 2e-4
    c.optim.warmup_steps = 2000
    c.optim.weight_decay = 0.01
    c.optim.ema_decay = 0.9999
    c.predict.num_steps = 28
    c.predict.batch_size = 32
    c.evaluators = ml_collections.ConfigDict(dict(
        heldout_loss=base.evaluator(2000, num_batches=4),
        samples=base.evaluator(2000, num_examples=8),
        decoded=base.evaluator(10_000, num_batches=4),
    ))
    c.lock()
    return c
