"""The checkpoint path of every benchmark: predict with a trained generator, then decode.

The generator works at its config's resolution (`config.data.resolution`, (h, w)). Each input
is letterboxed to it (scaled to fit, aspect ratio kept, centred on black), as training's
`data_mix.transforms.fit` keeps the aspect ratio; the generated image is decoded
(`Predictor.predict_decoded`, the task codec, K-seed ensembling), the letterbox cut away, and
the decoded prediction brought back to the input's size with the task's resampling
(`eval.predictions.RESIZERS`): nearest for label maps and masks, bilinear for depth (sky
carried by nearest) and RGB, bilinear + renormalized for normals.

    predictor = load_predictor(args)                           # --workdir, --step, --no-ema
    for job, decoded in predict(predictor, jobs, "depth", ensemble=1, batch_size=8, seed=0):
        write_npy(folder / f"{job.key}.npy", decoded)          # at job.image's size

Benchmarks write the decoded predictions into a folder in their documented format and score
that folder with the same code as any baseline's. Item i (in job order) uses seed `seed + i`.
jax is imported only here, and only when a checkpoint is scored.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from eval import predictions as preds

#: Resampling of each task's decoded output back to the input size.
RESIZE_KIND = {"semantic": "nearest", "referring": "nearest", "binary": "nearest",
               "depth": "depth", "normals": "normals", "restoration": "rgb", "instance": "nearest"}


@dataclasses.dataclass(frozen=True)
class Job:
    """One generation: input image uint8 (H, W, 3) at the dataset's size, the prompt, the
    codec's decode arguments, and the key its prediction is written under."""

    key: str
    image: np.ndarray
    prompt: str
    spec: dict


def load_predictor(args) -> Any:
    """`Predictor.from_workdir` with the shared checkpoint options (--step, --no-ema, --num-steps)."""
    from vision_banana.predict import Predictor

    return Predictor.from_workdir(args.workdir, step=args.step, use_ema=not args.no_ema,
                                  num_steps=args.num_steps)


def model_size(predictor) -> tuple[int, int]:
    """(h, w) the generator works at: `config.data.resolution` (int or pair)."""
    res = predictor.config.data.resolution
    return (int(res), int(res)) if np.isscalar(res) else (int(res[0]), int(res[1]))


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """uint8 (H, W, 3) scaled to fit (h, w) and centred on black; box = (top, bottom, left, right)."""
    h, w = image.shape[:2]
    out_h, out_w = size
    s = min(out_h / h, out_w / w)
    sh, sw = min(out_h, max(1, round(h * s))), min(out_w, max(1, round(w * s)))
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - sh) // 2, (out_w - sw) // 2
    canvas[top:top + sh, left:left + sw] = preds.resize_rgb(image, (sh, sw))
    return canvas, (top, top + sh, left, left + sw)


def unletterbox(decoded, box: tuple[int, int, int, int], size: tuple[int, int], task: str):
    """The decoded prediction inside `box`, resized to `size` (H, W) with the task's resampling.

    Instance outputs (`tasks.instance.Instances`) have their masks (N, h, w) resized; scores
    and colors are kept.
    """
    top, bottom, left, right = box
    if task == "instance":
        masks = np.asarray(decoded.masks)[:, top:bottom, left:right]
        resized = preds.resize_nearest(masks.transpose(1, 2, 0), size).transpose(2, 0, 1)
        return decoded._replace(masks=np.ascontiguousarray(resized))
    cut = np.asarray(decoded)[top:bottom, left:right]
    return preds.RESIZERS[RESIZE_KIND[task]](cut, size)


def predict(predictor, jobs: Iterable[Job], task: str, *, ensemble: int = 1, batch_size: int = 8,
            seed: int = 0, total: int | None = None, progress: bool = True) -> Iterator[tuple[Job, Any]]:
    """Yields (job, decoded prediction at the job image's size) in job order."""
    if task == "instance" and ensemble > 1:
        raise ValueError("instance outputs cannot be ensembled (each sample picks its own colors); "
                         "use --ensemble 1")
    size = model_size(predictor)
    bar = tqdm(total=total, desc=f"predict {task}", unit="img", disable=not progress)
    index = 0
    it = iter(jobs)
    while batch := list(itertools.islice(it, max(1, batch_size))):
        boxed = [letterbox(job.image, size) for job in batch]
        decoded = predictor.predict_decoded(
            np.stack([canvas for canvas, _ in boxed]), [job.prompt for job in batch], task,
            spec=[job.spec for job in batch], ensemble=ensemble,
            seeds=[seed + index + k for k in range(len(batch))])
        for job, (_, box), out in zip(batch, boxed, decoded, strict=True):
            yield job, unletterbox(out, box, job.image.shape[:2], task)
        index += len(batch)
        bar.update(len(batch))
    bar.close()


def predict_into(args, jobs: Iterable[Job], task: str, write, *, total: int | None = None,
                 ensemble: int | None = None) -> dict:
    """Every benchmark's checkpoint path: load the predictor from the shared options (--workdir,
    --step, --no-ema, --num-steps), predict and decode `jobs`, call `write(job, decoded)` for
    each, and return `describe(...)` plus the first prompt (for results.json)."""
    predictor = load_predictor(args)
    example = None
    for job, decoded in predict(predictor, jobs, task,
                                ensemble=args.ensemble if ensemble is None else ensemble,
                                batch_size=args.batch_size, seed=args.seed, total=total,
                                progress=not args.no_progress):
        example = example or job.prompt
        write(job, decoded)
    return {**describe(predictor, args, task), "prompt_example": example}


def describe(predictor, args, task: str) -> dict:
    """JSON-able account of how a checkpoint's predictions were made (for results.json)."""
    return {"workdir": str(args.workdir), "step": predictor.step, "ema": not args.no_ema,
            "num_steps": int(args.num_steps or predictor.config.predict.num_steps),
            "ensemble": int(args.ensemble), "seed": int(args.seed), "task": task,
            "resolution": list(model_size(predictor)),
            "geometry": "letterboxed to the model resolution (aspect kept, black padding); decoded "
                        f"outputs resized back with '{RESIZE_KIND[task]}' resampling"}

