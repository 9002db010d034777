"""`make demo`: the tiny generator instruction-tuned on the synthetic perception mixture.

What `python -m vision_banana.demo` trains (2 CPU cores, a few minutes). Built from `tiny.py`
(itself from `base.py`); only what the demo changes is set here. Options
(`get_config("steps=300,seed=1")`):

  res, batch, steps   image size (pixels, multiple of 4), global batch, training steps
  seed                model init, per-step noise and the data order / scenes
  text_length         bytes of prompt the byte text encoder reads (longer prompts are cut)
  generation_share    fraction of generation examples in the mixture (the rest: perception)
  onestep_prob        share of input-image examples trained on the one-step perception query
                      (`flow.flow_config`), which `predict.mode "onestep"` asks at test time
  quick               a smoke variant (tests): a one-block model, 4 steps, batch 8

Choices made for learning speed on a CPU, measured in docs/demo.md:
  - model.context_mode "channels": the input image's tokens are concatenated on channels
    rather than appended to the sequence (half the image tokens; about 2x faster steps);
  - text_length 80: the task words and the instance category of every prompt phrasing fit
    (the longest template names it at byte 68); the semantic color mapping that follows is
    cut, which the demo's fixed colors make harmless (see data_mix.mixtures);
  - predict.mode "onestep" with 1 step: the deterministic perception mode (the conditional
    mean in one call), which scores better than few-step Euler sampling from noise here.
"""

from __future__ import annotations

import ml_collections

from vision_banana.configs import base, tiny

DEMO_TASKS = ("generation", "depth", "normals", "semantic", "instance")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = base.parse_arg(arg, res=32, batch=16, steps=600, seed=0, text_length=80,
                          generation_share=0.2, onestep_prob=0.5,
                          quick=False)
    if opts.quick:
        opts.steps, opts.batch = 4, 8
    c = tiny.get_config(f"res={opts.res},batch={opts.batch},steps={opts.steps}")
    c.seed = opts.seed
    c.tasks = DEMO_TASKS
    c.model.context_mode = "channels"
    c.model.flux.in_channels = 2 * c.model.flux.out_channels
    c.model.text_encoder.max_length = opts.text_length
    if opts.quick:
        c.model.flux.depth = 1
        c.model.flux.depth_single_blocks = 1
        c.model.text_encoder.depth = 1
    c.data = base.mixture_data("synthetic_perception_demo", opts.res, seed=opts.seed,
                               generation_share=opts.generation_share)
    c.evaluators = ml_collections.ConfigDict()  # the demo evaluates once, after training
    c.train.log_every = max(1, min(10, opts.steps // 4))
    c.train.checkpoint_every = max(opts.steps, 1)  # one checkpoint, at the end
    c.train.async_checkpoint = False
    c.optim.lr = 2e-3
    c.optim.warmup_steps = min(30, max(opts.steps // 10, 1))
    c.optim.ema_decay = 0.99
    c.flow.onestep_prob = opts.onestep_prob
    c.predict.mode = "onestep"
    c.predict.num_steps = 1
    c.predict.batch_size = 64
    return c
