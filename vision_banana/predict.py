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

CLI: python -m vision_banana.predict --workdir W --image in.png --prompt "..." --out out.png
     [--task depth]  (also decode and save out.npy; `--help` for the sampler options)
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from vision_banana import checkpoint, sharding
from vision_banana.model_factory import (  # noqa: F401 (re-exported: predict's old names)
    BATCH_KEYS, abstract_model, build_model, load_config, make_sample_fn, resolution,
    trainable_filter, xla_options)

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

        spec: decode arguments for all examples, one dict per example, or None to parse each
          prompt (`codec.parse_prompt`).
        seeds: base seed per example (default 0..B-1); member k uses seed*K + k.
        Returns one decoded prediction per example (depth (H,W) float32 metres, normals
        (H,W,3) float32, label maps int, ...), combined over the K members by `combine`.
        """
        import tasks

        codec = tasks.get(task)
        prompts = list(prompts)
        k = int(ensemble)
        if k < 1:
            raise ValueError(f"ensemble must be >= 1, got {ensemble}")
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
        return out


# ---------------------------------------------------------------------------------- CLI


def _fit_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) resized to the model's (h, w) (area when shrinking, linear otherwise)."""
    import cv2

    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _back_to(decoded: np.ndarray, size: tuple[int, int], task: str) -> np.ndarray:
    """A decoded map at the model size brought to the input's (H, W): nearest for labels and
    masks, linear for depth (infinite sky by nearest), linear + renormalised for normals."""
    import cv2

    h, w = size
    arr = np.asarray(decoded)
    if arr.shape[:2] == (h, w):
        return arr
    if task in ("depth", "normals", "restoration"):
        finite = np.where(np.isfinite(arr), arr, 0).astype(np.float32)
        out = cv2.resize(finite, (w, h), interpolation=cv2.INTER_LINEAR)
        if task == "depth":
            sky = cv2.resize((~np.isfinite(arr)).astype(np.uint8), (w, h),
                             interpolation=cv2.INTER_NEAREST).astype(bool)
            return np.where(sky, np.inf, out).astype(np.float32)
        if task == "normals":
            norm = np.linalg.norm(out, axis=-1, keepdims=True)
            return np.where(norm > 0, out / np.maximum(norm, 1e-12), 0).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return cv2.resize(arr.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return arr  # instance results and the like: kept at the model size


def main(argv: Sequence[str] | None = None) -> None:
    import cv2

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="The input is resized to the run's training resolution; the output PNG is "
               "written at that resolution, and with --task the decoded map is also saved as "
               "OUT.npy at the input's size (depth: float32 metres, inf = sky; normals: float32 "
               "(H, W, 3) unit vectors, x right, y up, z toward the camera; semantic / "
               "referring / binary: int label maps).")
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument("--image", help="input image (PNG/JPEG); omit for text-to-image")
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--no_ema", action="store_true", help="use the raw weights, not the EMA")
    p.add_argument("--num_steps", type=int, default=None, help="sampler steps (default: config)")
    p.add_argument("--mode", choices=("euler", "onestep"), default=None,
                   help="sampler: Euler from noise, or the deterministic one-step perception "
                        "mode (default: config.predict.mode)")
    p.add_argument("--guidance", type=float, default=None,
                   help="distilled guidance for guidance-embedded transformers (default: config)")
    p.add_argument("--task", default=None,
                   help="also decode with this codec (depth, normals, semantic, referring, "
                        "binary, restoration, ...) and save OUT.npy; decode arguments are "
                        "parsed from the prompt")
    p.add_argument("--ensemble", type=int, default=1,
                   help="with --task: combine this many seeds in decoded space")
    args = p.parse_args(argv)

    predictor = Predictor.from_workdir(args.workdir, step=args.step, use_ema=not args.no_ema,
                                       num_steps=args.num_steps, guidance=args.guidance,
                                       mode=args.mode)
    size = resolution(predictor.config)
    images, input_size = None, size
    if args.image:
        bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if bgr is None:
            sys.exit(f"cannot read image {args.image}")
        rgb_in = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        input_size = rgb_in.shape[:2]
        images = _fit_input(rgb_in, size)[None]
    rgb = predictor(images, [args.prompt], [args.seed])[0]
    if not cv2.imwrite(args.out, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        sys.exit(f"cannot write {args.out}")
    print(f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]}) from step {predictor.step}")
    if args.task:
        if args.ensemble > 1:
            decoded = predictor.predict_decoded(images, [args.prompt], args.task,
                                                ensemble=args.ensemble, seeds=[args.seed])[0]
        else:  # the image just written, decoded with the prompt's arguments
            import tasks

            codec = tasks.get(args.task)
            decoded = codec.decode(rgb, **codec.parse_prompt(args.prompt))
        decoded = _back_to(decoded, input_size, args.task)
        out = str(pathlib.Path(args.out).with_suffix(".npy"))
        np.save(out, decoded)
        print(f"wrote {out} ({args.task}, {np.asarray(decoded).dtype} "
              f"{tuple(np.asarray(decoded).shape)})")


if __name__ == "__main__":
    main()
