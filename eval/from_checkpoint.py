"""The checkpoint path of every benchmark: predict with a trained generator, then decode.

The geometry is the Predictor's (`Predictor.predict_maps`, the one path every command uses):
each input is letterboxed to the generator's resolution (`config.data.resolution`, (h, w);
scaled to fit, aspect ratio kept, centred on black), the generated image is decoded (the task
codec, K-seed ensembling), the letterbox cut away, and the decoded prediction brought back to
the input's size with the task's resampling (`tasks.geometry.RESIZE_KIND`): nearest for label
maps and masks, bilinear over finite depth (sky carried by nearest), bilinear + renormalized
normals, bilinear RGB. `letterbox` / `unletterbox` / `RESIZE_KIND` here are those functions.

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

from tasks.geometry import RESIZE_KIND, letterbox, unletterbox  # noqa: F401 (re-exported)


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
    return tuple(predictor.resolution)


def predict(predictor, jobs: Iterable[Job], task: str, *, ensemble: int = 1, batch_size: int = 8,
            seed: int = 0, total: int | None = None, progress: bool = True) -> Iterator[tuple[Job, Any]]:
    """Yields (job, decoded prediction at the job image's size) in job order."""
    if task == "instance" and ensemble > 1:
        raise ValueError("instance outputs cannot be ensembled (each sample picks its own colors); "
                         "use --ensemble 1")
    bar = tqdm(total=total, desc=f"predict {task}", unit="img", disable=not progress)
    index = 0
    it = iter(jobs)
    while batch := list(itertools.islice(it, max(1, batch_size))):
        decoded = predictor.predict_maps(
            [job.image for job in batch], [job.prompt for job in batch], task,
            spec=[job.spec for job in batch], ensemble=ensemble,
            seeds=[seed + index + k for k in range(len(batch))])
        yield from zip(batch, decoded, strict=True)
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

