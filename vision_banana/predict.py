"""Predictor: (input image, prompt, seed) -> generated RGB image; decoding and ensembling.

    predictor = Predictor.from_workdir("runs/tiny")              # latest checkpoint, EMA weights
    rgb = predictor(images, ["generate a metric depth map"] * B, seeds=range(B))  # uint8 (B,H,W,3)
    depth_m = predictor.predict_decoded(images, prompts, "depth", ensemble=5)      # (B,H,W) metres

Each output depends only on its own (image, prompt, seed), not on the other examples of the
call: the sampler runs per example (`jax.vmap` over examples, one PRNG key from each seed),
sharded over the mesh's batch axes. (Calls of another size run another XLA program, whose float
rounding may move a pixel by one level; the same call is bit-identical.) Ensembling runs K seeds per example
(seed*K + k) and combines in decoded space: median depth, renormalized mean normals,
per-pixel majority vote for label maps, mean for restored images.

How a generator is built from a config and split into trainable parameters and the rest
(`build_model`, `abstract_model`, `load_config`, ...) lives in `vision_banana.model_factory`,
which the trainer shares; those names stay importable from here.

One inference geometry: `predict_maps` takes inputs of any size, letterboxes them to the
model's resolution and brings each decoded output back to its input's size with one resampling
policy per output kind (`tasks.geometry`). The CLI and every benchmark's checkpoint path
(`eval.from_checkpoint`) go through it, so they produce the same maps from the same checkpoint.

CLI: python -m vision_banana.predict --workdir W --image in.png --prompt "..." --out out.png
     [--task depth]  (also decode and save out.npy; `--help` for the sampler options)
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

import tasks
from tasks import geometry
from vision_banana import checkpoint, cli_flags, prompt_check, sharding
from vision_banana.model_factory import (  # noqa: F401 (re-exported: predict's old names)
    BATCH_KEYS,
    abstract_model,
    build_model,
    load_config,
    make_sample_fn,
    resolution,
    trainable_filter,
    xla_options,
)

_resolution = resolution  # the old private name (benchmarks, user scripts)

class Restored(NamedTuple):
    """A trained generator restored from a workdir (`restore`); `nnx.merge(graphdef, params,
    model_state)` is the Generator."""

    config: ml_collections.ConfigDict
    graphdef: Any
    params: Any
    model_state: Any
    tokenizer: Any
    mesh: jax.sharding.Mesh
    step: int


def restore(workdir: str | pathlib.Path, step: int | None = None, *, use_ema: bool = True,
            mesh: jax.sharding.Mesh | None = None) -> Restored:
    """The generator of a training run: `<workdir>/config.json` and a checkpoint (latest unless
    `step`), sharded on `mesh` (default: `sharding.make_mesh(config)`).

    use_ema: the EMA weights (an error if the run kept none) or the raw ones. A run started from
    pretrained weights gets its frozen parts re-imported from its `init_from`
    (`checkpoint.Checkpointer.restore`). The optimizer state is not read.
    """
    workdir = pathlib.Path(workdir)
    config = load_config(workdir)
    if use_ema and float(config.optim.ema_decay) <= 0:
        raise ValueError(f"{workdir}: the run kept no EMA (optim.ema_decay=0); pass "
                         f"use_ema=False")
    # init_from: where frozen pretrained weights the checkpoint omits may be re-imported from.
    ckpt = checkpoint.Checkpointer(workdir, read_only=True,
                                   init_from=str(config.get("init_from") or ""))
    try:
        step = ckpt.latest_step() if step is None else int(step)
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {ckpt.directory}")
        mesh = sharding.make_mesh(config) if mesh is None else mesh
        rules = sharding.rules_from_config(config)
        graphdef, params, model_state, tokenizer = abstract_model(config)
        abstract = {"params": params, "model_state": model_state}
        abstract = sharding.abstract_with_shardings(
            abstract, sharding.tree_shardings(abstract, mesh, rules))
        item = "ema" if use_ema else "params"
        parts, _ = ckpt.restore(step, {item: abstract["params"],
                                       "model_state": abstract["model_state"]},
                                with_data=False)
    finally:
        ckpt.close()
    return Restored(config, graphdef, parts[item], parts["model_state"], tokenizer, mesh, step)


# ---------------------------------------------------------------------------------- ensembling


def _vote(stack: np.ndarray) -> np.ndarray:
    """Per-pixel majority over axis 0 of an int/bool (K, ...) stack; ties -> smallest label."""
    values = np.unique(stack)
    best = np.full(stack.shape[1:], values[0], stack.dtype)
    best_count = np.zeros(stack.shape[1:], np.int32)
    for v in values:  # loops over labels (a few dozen), not pixels
        count = (stack == v).sum(0, dtype=np.int32)
        better = count > best_count
        best[better], best_count[better] = v, count[better]
    return best


def combine(task: str, decoded: Sequence[np.ndarray]) -> np.ndarray:
    """Combine K decoded predictions of one example in decoded space.

    depth (H,W) metres: median (inf = sky stays inf when most members say so); normals
    (H,W,3): mean, renormalized; restoration (H,W,3) uint8: mean, rounded; integer / bool
    label maps (semantic, referring, binary): per-pixel majority vote.
    """
    stack = np.stack([np.asarray(d) for d in decoded])
    if len(stack) == 1:
        return stack[0]
    if task == "depth":
        return np.median(stack, axis=0).astype(np.float32)
    if task == "normals":
        mean = stack.astype(np.float32).mean(0)
        norm = np.linalg.norm(mean, axis=-1, keepdims=True)
        return np.where(norm > 0, mean / np.maximum(norm, 1e-12), 0).astype(np.float32)
    if stack.dtype == np.uint8 and stack.ndim == 4:
        return np.round(stack.astype(np.float32).mean(0)).astype(np.uint8)
    if stack.dtype.kind in "biu":
        return _vote(stack)
    raise ValueError(f"cannot ensemble decoded {task!r} outputs of dtype {stack.dtype} and shape "
                     f"{stack.shape[1:]}; use ensemble=1")


# ---------------------------------------------------------------------------------- predictor


class Predictor:
    """Generates images from (image, prompt, seed) with a trained generator.

    Args:
      config: the run's config (a ConfigDict as `train_and_evaluate` saved it).
      graphdef, params, model_state: the split generator (`build_model`); params may be the
        EMA weights.
      tokenizer: prompts -> int32 (B, L).
      mesh: device mesh (default: `sharding.make_mesh(config)`).
      num_steps, guidance, mode: sampler settings (default: `config.predict`).
    """

    def __init__(self, config, graphdef, params, model_state, tokenizer, *, mesh=None,
                 num_steps: int | None = None, guidance: float | None = None,
                 mode: str | None = None):
        self.config = config
        self.mesh = mesh if mesh is not None else sharding.make_mesh(config)
        self.rules = sharding.rules_from_config(config)
        self.params, self.model_state, self.tokenizer = params, model_state, tokenizer
        self.shards = sharding.batch_shards(self.mesh, self.rules)
        self.batch_size = max(int(config.predict.batch_size) // self.shards, 1) * self.shards
        self.task_names = list(config.tasks)
        self.step: int | None = None  # the checkpoint step, when loaded by from_workdir
        self._sample = make_sample_fn(
            graphdef, self.rules, config.flow,
            num_steps=int(config.predict.num_steps if num_steps is None else num_steps),
            guidance=float(config.predict.guidance if guidance is None else guidance),
            cfg_scale=float(config.predict.cfg_scale),
            mode=str(config.predict.mode if mode is None else mode),
            compiler_options=xla_options(config))

    @classmethod
    def from_workdir(cls, workdir: str | pathlib.Path, step: int | None = None,
                     use_ema: bool = True, **kwargs) -> "Predictor":
        """Load `<workdir>/config.json` and a checkpoint (latest unless `step`).

        use_ema: restore the EMA weights (an error if the run kept none) or the raw ones.
        """
        mesh = kwargs.pop("mesh", None)
        r = restore(workdir, step, use_ema=use_ema, mesh=mesh)
        predictor = cls(r.config, r.graphdef, r.params, r.model_state, r.tokenizer,
                        mesh=r.mesh, **kwargs)
        predictor.step = r.step
        return predictor

    def _padded_size(self, m: int) -> int:
        """Examples per device call for m examples: a power-of-two multiple of the batch
        shards, at most `batch_size` (few distinct shapes, so few compilations)."""
        per_shard = -(-m // self.shards)
        return min(self.shards * (1 << (per_shard - 1).bit_length()), self.batch_size)

    def generate(self, batch: dict[str, np.ndarray], seeds: Sequence[int]) -> np.ndarray:
        """Sample for a tokenized batch (contract keys, numpy, any size) -> uint8 (B,H,W,3).

        Multi-process runs: every process passes its own examples (the same number on each)
        and gets its own outputs back.
        """
        n = len(seeds)
        if n == 0:
            return np.zeros((0,) + tuple(batch["target"].shape[1:]), np.uint8)
        out = []
        starts = range(0, n, self.batch_size)
        for start in tqdm(starts, desc="predict", unit="batch", leave=False,
                          disable=len(starts) < 4 or jax.process_index() != 0):
            chunk = {k: np.asarray(batch[k][start:start + self.batch_size]) for k in BATCH_KEYS}
            chunk_seeds = np.asarray(seeds[start:start + self.batch_size], np.uint32)
            m = len(chunk_seeds)
            pad = self._padded_size(m) - m  # repeat the last example up to the call size
            if pad:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for k, v in
                         chunk.items()}
                chunk_seeds = np.concatenate([chunk_seeds, np.repeat(chunk_seeds[-1:], pad)])
            with sharding.activate(self.mesh, sharding.activation_rules(self.rules)):
                arrays = sharding.shard_batch(chunk, self.mesh, self.rules)
                keys = jax.vmap(jax.random.key)(jnp.asarray(chunk_seeds))
                images = self._sample(self.params, self.model_state, arrays, keys)
            out.append(sharding.to_local(images, self.mesh, self.rules)[:m])
        return np.concatenate(out)

    def make_batch(self, images: np.ndarray | None, prompts: Sequence[str],
                   size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Contract batch from images uint8 (B,H,W,3) (None = text-to-image) and prompts."""
        prompts = list(prompts)
        if images is None:
            h, w = size or resolution(self.config)
            images = np.zeros((len(prompts), h, w, 3), np.uint8)
            has_image = np.zeros(len(prompts), bool)
        else:
            images = np.asarray(images)
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
                raise ValueError(f"images must be uint8 (B,H,W,3), got {images.dtype} "
                                 f"{images.shape}")
            has_image = np.ones(len(images), bool)
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        return {"image": images, "has_image": has_image, "target": np.zeros_like(images),
                "tokens": np.asarray(self.tokenizer(prompts), np.int32),
                "task_id": np.zeros(len(prompts), np.int32)}

    def __call__(self, images: np.ndarray | None, prompts: Sequence[str],
                 seeds: Sequence[int] | int = 0) -> np.ndarray:
        """uint8 (B,H,W,3) generated for each (image, prompt, seed).

        images: uint8 (B,H,W,3), or None for text-to-image at the config's resolution.
        seeds: one per example, or one int used for all.
        """
        seeds = [int(seeds)] * len(prompts) if np.isscalar(seeds) else [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        return self.generate(self.make_batch(images, prompts), seeds)

    def predict_decoded(self, images: np.ndarray | None, prompts: Sequence[str], task: str,
                        spec: dict | Sequence[dict] | None = None, ensemble: int = 1,
                        seeds: Sequence[int] | None = None) -> list[Any]:
        """Generate, decode with `tasks.get(task).decode(rgb, **spec)`, ensemble K seeds.

        images: uint8 (B,H,W,3) at the model's resolution (see `predict_maps` for any size),
          or None for text-to-image.
        spec: decode arguments for all examples, one dict per example, or None to parse each
          prompt (`codec.parse_prompt`).
        seeds: base seed per example (default 0..B-1); member k uses seed*K + k.
        Returns one decoded prediction per example (depth (H,W) float32 metres, normals
        (H,W,3) float32, label maps int, ...), combined over the K members by `combine`.
        """
        return self._generate_decoded(images, prompts, task, spec, ensemble, seeds)[1]

    def _generate_decoded(self, images, prompts, task, spec, ensemble, seeds):
        """(rgb uint8 (B*K,h,w,3) example-major, [decoded per example]) of `predict_decoded`."""
        codec = tasks.get(task)
        prompts = list(prompts)
        k = check_ensemble(task, ensemble)
        specs = (spec if isinstance(spec, Sequence) else [spec] * len(prompts))
        specs = [s if s is not None else codec.parse_prompt(p) for s, p in zip(specs, prompts)]
        base = list(range(len(prompts))) if seeds is None else [int(s) for s in seeds]
        batch = self.make_batch(images, prompts)
        # Members k of every example in one generate call: example-major order.
        rep = {key: np.repeat(v, k, axis=0) for key, v in batch.items()}
        rgb = self.generate(rep, [s * k + j for s in base for j in range(k)])
        out = []
        for i, s in enumerate(specs):
            members = [codec.decode(rgb[i * k + j], **s) for j in range(k)]
            out.append(combine(task, members) if k > 1 else members[0])
        return rgb, out

    @property
    def resolution(self) -> tuple[int, int]:
        """(h, w) the generator works at (`config.data.resolution`)."""
        return resolution(self.config)

    def letterbox(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[geometry.Box]]:
        """Inputs uint8 (H_i, W_i, 3) of any sizes -> (uint8 (B, h, w, 3) canvases at the model's
        resolution, boxes): each scaled to fit, aspect ratio kept, centred on black
        (`tasks.geometry.letterbox`), as training's `data_mix.transforms.fit` keeps the aspect."""
        boxed = [geometry.letterbox(np.asarray(im), self.resolution) for im in images]
        h, w = self.resolution
        canvases = (np.stack([c for c, _ in boxed]) if boxed
                    else np.zeros((0, h, w, 3), np.uint8))
        return canvases, [box for _, box in boxed]

    def predict_maps(self, images: Sequence[np.ndarray], prompts: Sequence[str], task: str,
                     spec: dict | Sequence[dict] | None = None, ensemble: int = 1,
                     seeds: Sequence[int] | None = None, *, return_rgb: bool = False):
        """Decoded predictions at each input's own size: the one inference geometry.

        images: uint8 (H_i, W_i, 3) each, any sizes; letterboxed to the model's resolution
          (`letterbox`), generated and decoded as `predict_decoded` does (spec, ensemble K,
          seeds: member k of example i uses seeds[i]*K + k), the letterbox cut away and the
          decoded map brought back to (H_i, W_i) with the task's resampling
          (`tasks.geometry.RESIZE_KIND`: nearest for labels, masks and instance masks;
          finite-only bilinear for depth, +inf sky by nearest; bilinear + renormalised
          normals; bilinear RGB).
        Returns [decoded at (H_i, W_i)], and with return_rgb also the generated images
        uint8 (B*K, h, w, 3) at the model's resolution (example-major, letterbox included).
        """
        images = [np.asarray(im) for im in images]
        canvases, boxes = self.letterbox(images)
        rgb, decoded = self._generate_decoded(canvases, prompts, task, spec, ensemble, seeds)
        maps = [geometry.unletterbox(d, box, im.shape[:2], task)
                for d, box, im in zip(decoded, boxes, images, strict=True)]
        return (maps, rgb) if return_rgb else maps


def check_ensemble(task: str, ensemble: int) -> int:
    """`ensemble` as an int >= 1, refused (ValueError) below 1 and for instance outputs (each
    sample picks its own instance colors, so members cannot be matched)."""
    k = int(ensemble)
    if k < 1:
        raise ValueError(f"ensemble must be >= 1, got {ensemble}")
    if task == "instance" and k > 1:
        raise ValueError("instance outputs cannot be ensembled (each sample picks its own "
                         "colors); use ensemble 1")
    return k


# ---------------------------------------------------------------------------------- CLI

_PROG = "python -m vision_banana.predict"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG, description=__doc__.split("\n")[0],
        epilog="The input is letterboxed to the run's training resolution (scaled to fit, aspect "
               "ratio kept, centred on black); the output PNG is the generated image at that "
               "resolution (with --ensemble K, its first member, seed SEED*K). With --task the "
               "decoded map is also saved beside it at the input's size, the letterbox cut away: "
               "OUT.npy (depth: float32 metres, inf = sky; normals: float32 (H, W, 3) unit "
               "vectors, x right, y up, z toward the camera; semantic / referring / binary: int "
               "label maps; restoration: uint8 RGB), or OUT.npz for instance (masks bool "
               "(N, H, W), scores, colors). Every argument is checked before the model loads. "
               "Old underscore spellings (--no_ema, --num_steps) still work, with a notice.")
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument("--image", help="input image (PNG/JPEG, any size); omit for text-to-image")
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", required=True, help="output PNG (its folder must exist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    p.add_argument("--num-steps", type=int, default=None,
                   help="sampler steps (default: config)")
    p.add_argument("--mode", choices=("euler", "onestep"), default=None,
                   help="sampler: Euler from noise, or the deterministic one-step perception "
                        "mode (default: config.predict.mode)")
    p.add_argument("--guidance", type=float, default=None,
                   help="distilled guidance for guidance-embedded transformers (default: config)")
    p.add_argument("--task", default=None,
                   help=f"also decode with this codec ({', '.join(tasks.names())}) and save "
                        "OUT.npy; decode arguments are parsed from the prompt (label-map tasks "
                        "need a readable class -> color mapping in it)")
    p.add_argument("--ensemble", type=int, default=1,
                   help="with --task: combine this many seeds in decoded space (>= 1)")
    return p


def _checked(args) -> tuple[np.ndarray | None, dict | None]:
    """Every argument checked before any loading or generating; returns (the input image
    uint8 (H, W, 3) or None, the decode spec or None). Raises ValueError (one line)."""
    cli_flags.at_least("--ensemble", args.ensemble, 1)
    cli_flags.at_least("--num-steps", args.num_steps, 1)
    spec = None
    if args.task is not None:
        if args.task not in tasks.names():
            raise ValueError(f"--task {args.task!r}: unknown codec; known: "
                             f"{', '.join(tasks.names())}")
        check_ensemble(args.task, args.ensemble)
        spec = prompt_check.decode_spec(args.task, args.prompt)
    elif args.ensemble > 1:
        raise ValueError("--ensemble needs --task (members are combined in decoded space)")
    cli_flags.output_file("--out", args.out, (".png",))
    load_config(args.workdir)  # not a training workdir -> FileNotFoundError naming config.json
    image = None
    if args.image:
        bgr = cv2.imread(str(cli_flags.input_file("--image", args.image)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"--image {args.image}: not a readable image")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return image, spec


def main(argv: Sequence[str] | None = None) -> None:
    args = cli_flags.parse_args(_parser(), argv)
    try:
        image, spec = _checked(args)
        predictor = Predictor.from_workdir(args.workdir, step=args.step,
                                           use_ema=not args.no_ema, num_steps=args.num_steps,
                                           guidance=args.guidance, mode=args.mode)
    except (ValueError, KeyError, FileNotFoundError) as e:
        sys.exit(f"{_PROG}: error: {e.args[0] if e.args else e}")
    decoded = None
    if args.task and image is not None:
        maps, rgb = predictor.predict_maps([image], [args.prompt], args.task, spec=[spec],
                                           ensemble=args.ensemble, seeds=[args.seed],
                                           return_rgb=True)
        decoded = maps[0]
    elif args.task:  # text-to-image, decoded at the model's resolution
        rgb, maps = predictor._generate_decoded(None, [args.prompt], args.task, [spec],
                                                args.ensemble, [args.seed])
        decoded = maps[0]
    else:
        canvases = predictor.letterbox([image])[0] if image is not None else None
        rgb = predictor(canvases, [args.prompt], [args.seed])
    if not cv2.imwrite(args.out, cv2.cvtColor(rgb[0], cv2.COLOR_RGB2BGR)):
        sys.exit(f"{_PROG}: error: cannot write {args.out}")
    print(f"wrote {args.out} ({rgb.shape[2]}x{rgb.shape[1]}) from step {predictor.step}")
    if decoded is None:
        return
    if args.task == "instance":
        out = str(pathlib.Path(args.out).with_suffix(".npz"))
        np.savez(out, masks=decoded.masks, scores=decoded.scores, colors=decoded.colors)
        print(f"wrote {out} (instance, {len(decoded.scores)} masks of "
              f"{tuple(decoded.masks.shape[1:])})")
        return
    out = str(pathlib.Path(args.out).with_suffix(".npy"))
    np.save(out, decoded)
    print(f"wrote {out} ({args.task}, {np.asarray(decoded).dtype} "
          f"{tuple(np.asarray(decoded).shape)})")


if __name__ == "__main__":
    main()
