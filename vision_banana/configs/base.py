"""Every config key with its default; the variants (tiny, small, flux_dev, flux_kontext) override.

    python -m vision_banana.train --config=vision_banana/configs/tiny.py --workdir=runs/tiny \
        --config.train.steps=100 --config.optim.lr=1e-3

Configs are locked ConfigDicts: a misspelled key, in a file or on the command line, is an error
naming it. Sections:

  seed           model init and per-step PRNG (fold_in(seed, step))
  tasks          task names; batch["task_id"] indexes this list (per-task loss logging)
  model          the generator (`vision_banana.models.*_model_config()`); `model.lora`: low-rank
                 adapters (`vision_banana.lora.lora_config`: rank, alpha, patterns; rank 0 =
                 off); train only them with `train.trainable = lora.TRAINABLE_PATTERN`
  flow           objective and sampler knobs (`vision_banana.flow.flow_config()`)
  data           the data mixture (`data_mix.mixture.default_config()` + sources)
  train          steps, batch, logging / checkpoint cadence, trainable-parameter regex
  optim          AdamW + warmup/cosine + clipping + EMA (see `vision_banana.optim`)
  mesh           device mesh sizes (data, fsdp, tensor); -1 = the remaining devices
  sharding.rules logical axis name -> mesh axes (None = replicated); see vision_banana.sharding
  evaluators     {name: {every, at_end, split, ...}} run periodically (vision_banana.evaluators)
  predict        sampler settings of `Predictor` and of the evaluators
  xla            XLA compile options of every jitted function, by XLA flag name; None = XLA's
                 default (`vision_banana.model_factory.xla_options`)
  init_from      path of a pretrained checkpoint to start from ("" = random init): a fresh
                 run imports its weights (`vision_banana.convert`, any path `convert.discover`
                 accepts); checkpoints then omit the frozen pretrained weights and a resume
                 re-imports them from here (vision_banana.init_from), so it must stay readable
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

TASKS = ("generation", "depth", "normals", "semantic", "instance", "referring", "binary",
         "restoration")

# FSDP + tensor parallelism by name. Parameters: `embed` dims over fsdp, `mlp` / `heads` over
# tensor. Activations: batch over (data, fsdp); the trainer drops fsdp from their other dims
# (sharding.activation_rules). Every logical name the model uses must appear here.
RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("vocab", None),
    ("latent", None),
    ("cond", None),
    ("norm", None),
)


def parse_arg(arg: str | None, **defaults):
    """`get_config(arg)` options as "key=value,key=value" over typed defaults (big_vision style).

    Raises KeyError naming an unknown option and listing the known ones.
    """
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise KeyError(f"unknown config option {key!r} in {arg!r}; known: {sorted(defaults)}")
        kind = type(defaults[key])
        out[key] = (value.strip().lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return ml_collections.ConfigDict(out)


def mixture_data(name: str, resolution: int, **kwargs) -> ml_collections.ConfigDict:
    """The named data mixture (`data_mix.mixtures.get`) at `resolution` x `resolution` pixels.

    `synthetic_demo` (embedded synthetic scenes) needs no download; others take their
    arguments (e.g. `root=`) as kwargs.
    """
    from data_mix import mixtures

    return mixtures.get(name, resolution=int(resolution), **kwargs)


def with_lora(model: ml_collections.ConfigDict, rank: int = 0,
              alpha: float | None = None) -> ml_collections.ConfigDict:
    """`model` with a `lora` section (`vision_banana.lora.lora_config`, default patterns).

    rank 0 = off. alpha defaults to the rank (update scale alpha / rank = 1), and to 16 when
    the rank is 0, so that `--config.model.lora.rank=16` alone also gives scale 1. Variants
    that replace `config.model` call this so `model.lora` stays overridable.
    """
    from vision_banana import lora

    if alpha is None:
        alpha = rank if rank > 0 else 16
    model.lora = lora.lora_config(rank=int(rank), alpha=float(alpha))
    return model


def evaluator(every: int, *, at_end: bool = True, split: str = "validation",
              **options) -> dict:
    """One `config.evaluators` section with every key present, so that a locked config still
    takes `--config.evaluators.NAME.at_end=false` (or `every`, `split`) on the command line."""
    return dict(every=int(every), at_end=bool(at_end), split=split, **options)


def make() -> ml_collections.ConfigDict:
    """The unlocked base config (variants edit it, then lock)."""
    from vision_banana import flow
    from vision_banana.models import tiny_model_config

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.tasks = TASKS
    c.model = tiny_model_config()
    # Present (rank 0 = off) so a locked config takes `--config.model.lora.rank=16`; variants
    # that replace `c.model` re-add it with `with_lora`.
    c.model = with_lora(c.model)
    c.flow = flow.flow_config()
    c.data = mixture_data("synthetic_demo", 32)

    c.train = ml_collections.ConfigDict(dict(
        steps=1000,
        global_batch_size=16,
        log_every=10,              # steps between metric records (one host sync each)
        checkpoint_every=200,      # steps between checkpoints (and one at the end)
        keep_checkpoints=3,
        async_checkpoint=True,     # write checkpoints in the background
        data_workers=0,            # grain worker processes (0 = threads in this process)
        trainable=".*",            # regex on "/"-joined parameter paths, within the model's
                                   # TRAINABLE filter (the autoencoder is never trained)
        compilation_cache_dir="",  # persistent XLA compilation cache ("" = off)
        xla_options="",            # deprecated "name=value,..." form of the `xla` section
                                   # (still read, with a warning; `xla` wins on a name)
    ))
    c.optim = ml_collections.ConfigDict(dict(
        lr=3e-4, warmup_steps=100, decay_steps=-1, end_lr_factor=0.1,
        b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=1.0, ema_decay=0.999,
    ))
    # num_devices: use the first N devices (-1 = all); single-process debugging and tests only.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, num_devices=-1))
    c.sharding = ml_collections.ConfigDict(dict(rules=RULES))
    c.evaluators = ml_collections.ConfigDict()
    c.predict = ml_collections.ConfigDict(dict(
        num_steps=20,              # sampler steps
        mode="euler",              # "euler" (from noise) or "onestep" (deterministic)
        guidance=1.0,              # distilled guidance (guidance-embedded transformers)
        cfg_scale=0.0,             # classifier-free guidance scale; 0 = off
        batch_size=16,             # examples per device call (rounded to the batch shards)
    ))
    # Typed placeholders (None = XLA's default) so a locked config takes e.g.
    # `--config.xla.xla_backend_optimization_level=0`; a config file may add other XLA flags
    # to the section before locking.
    c.xla = ml_collections.ConfigDict(dict(
        xla_backend_optimization_level=config_dict.placeholder(int),  # 0 = fast compiles
        xla_cpu_use_fusion_emitters=config_dict.placeholder(bool),
    ))
    c.init_from = ""
    # Rerunning a workdir with a config that differs in more than run length / logging is
    # refused (vision_banana.workdir); True continues with the new config, keeping the old
    # record as config.<time>.json.
    c.allow_config_change = False
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    c = make()
    c.lock()
    return c
