"""CPU demo: the tiny generator (about 2.2M parameters) on 32x32 synthetic scenes.

A few hundred steps on 2 CPU cores. Options (`get_config("res=64,batch=8")`):
  res, batch, steps   image size (pixels, multiple of 4), global batch, training steps
  runlocal            a smoke variant (big_vision's "runlocal"): one double and one single
                      block, one text layer, 16x16 images, batch 8, no evaluators, a fixed
                      cosine horizon (runs of any length share one compiled program) and XLA at
                      -O0 (compiles about 2.5x faster on CPU, runs slower); what the tests train
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = base.parse_arg(arg, res=32, batch=16, steps=300, runlocal=False)
    c = base.make()
    if opts.runlocal:
        opts.res, opts.batch, opts.steps = 16, 8, 10
        c.model.flux.depth = 1
        c.model.flux.depth_single_blocks = 1
        c.model.text_encoder.depth = 1
        c.model.text_encoder.max_length = 32
        c.optim.decay_steps = 20
        c.xla.xla_backend_optimization_level = 0
    c.data = base.mixture_data("synthetic_demo", opts.res)
    c.train.steps = opts.steps
    c.train.global_batch_size = opts.batch
    c.train.log_every = 10
    c.train.checkpoint_every = 100
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 20
    c.optim.ema_decay = 0.99
    c.predict.num_steps = 8
    c.predict.batch_size = opts.batch
    if not opts.runlocal:
        c.evaluators = ml_collections.ConfigDict(dict(
            heldout_loss=base.evaluator(100, num_batches=2),
            samples=base.evaluator(100, num_examples=8),
            decoded=base.evaluator(0, num_batches=1),
        ))
    c.lock()
    return c
