"""Periodic evaluators chosen by name in the config; each yields (metric, value).

    config.evaluators.heldout_loss = ConfigDict(dict(every=100, num_batches=2, split="validation"))
    config.evaluators.samples = ConfigDict(dict(every=100, num_examples=8, split="validation"))
    config.evaluators.decoded = ConfigDict(dict(every=500, num_batches=1, split="validation"))

Every section has `every` (steps; 0 = only at the end), `at_end` (also after the last step)
and `split`: held-out data is `config.data` with every source's `kwargs.split` set to it
(sources without a `split` argument are used as they are). Metrics are logged as
`<name>/<metric>`. Evaluators see the live weights (EMA when the run keeps one) through a
`Predictor`, so what they measure is what `Predictor.from_workdir` would produce. In
multi-process runs every process evaluates its slice of the held-out batches and process 0
logs the metrics of its own slice.

Registered:
  heldout_loss  flow-matching loss on fixed held-out batches and fixed noise (per task too)
  samples       PNG grid input | generated | target under `<workdir>/samples/`, and TensorBoard
  decoded       generate, decode with the task codecs, score against the decoded targets with
                the benchmarks' evaluators (`eval.metrics.for_task`), logged under the metric
                table's keys: depth abs_rel / delta1 (synthetic-scenes preset: clipped to
                [1e-3, 100] m), normals mean / median angle (deg, pooled), semantic mIoU /
                pixel accuracy (one confusion matrix over the set), images PSNR (dB) / SSIM
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from eval import metrics
from eval.metrics import table
from vision_banana import metrics_io, model_factory, predict, sharding


@dataclasses.dataclass
class HeldOut:
    """Held-out batches: contract arrays plus what evaluation needs per example."""
    batch: dict[str, np.ndarray]
    prompts: list[str]
    tasks: list[str]
    meta: list[dict]


@dataclasses.dataclass
class EvalContext:
    step: int
    workdir: pathlib.Path
    predictor: predict.Predictor      # live weights
    writer: metrics_io.MetricWriter
    heldout: list[HeldOut]            # the evaluator's held-out batches
    is_main: bool


def heldout_data_config(config, split: str) -> ml_collections.ConfigDict:
    """`config.data` with each source's `kwargs.split` (where present) set to `split`."""
    data = copy.deepcopy(config.data)
    with data.unlocked():
        for name in data.sources:
            kwargs = data.sources[name].get("kwargs")
            if kwargs is not None and "split" in kwargs:
                kwargs["split"] = split
    return data


def load_heldout(config, tokenizer, split: str, num_batches: int) -> list[HeldOut]:
    """The first `num_batches` global batches of the held-out mixture (this process's slice)."""
    from data_mix.iterator import make_iterator
    from data_mix.mixture import Mixture

    it = make_iterator(Mixture(heldout_data_config(config, split)),
                       global_batch_size=int(config.train.global_batch_size),
                       process_index=jax.process_index(), process_count=jax.process_count(),
                       tokenize=tokenizer, task_names=list(config.tasks))
    out = []
    for _ in range(num_batches):
        batch = next(it)
        out.append(HeldOut({k: batch[k] for k in model_factory.BATCH_KEYS}, list(it.last_prompts),
                           list(it.last_tasks), list(it.last_meta)))
    it.close()
    return out


# ---------------------------------------------------------------------------------- evaluators


class HeldoutLoss:
    """Mean flow loss on the held-out batches, noise and timesteps fixed by `seed`."""

    def __init__(self, section, config, graphdef, mesh):
        from vision_banana import flow

        self.seed = int(section.get("seed", 0))
        self.tasks = list(config.tasks)
        self.mesh, self.rules = mesh, sharding.rules_from_config(config)

        def per_example(params, model_state, batch, key):
            model = nnx.merge(graphdef, params, model_state)
            return flow.training_loss(model, batch, key, config.flow)[1]["per_example_loss"]

        self._fn = jax.jit(per_example, compiler_options=model_factory.xla_options(config) or None)

    def run(self, ctx: EvalContext) -> Iterator[tuple[str, float]]:
        losses, task_ids = [], []
        with sharding.activate(self.mesh, sharding.activation_rules(self.rules)):
            for i, held in enumerate(ctx.heldout):
                batch = sharding.shard_batch(held.batch, self.mesh, self.rules)
                key = jax.random.fold_in(jax.random.key(self.seed), i)
                per = self._fn(ctx.predictor.params, ctx.predictor.model_state, batch, key)
                losses.append(sharding.to_local(per, self.mesh, self.rules))
                task_ids.append(held.batch["task_id"])
        losses, task_ids = np.concatenate(losses), np.concatenate(task_ids)
        yield "loss", float(losses.mean())
        for t in np.unique(task_ids):
            yield f"loss/{self.tasks[t]}", float(losses[task_ids == t].mean())


def sample_grid(images: np.ndarray, has_image: np.ndarray, generated: np.ndarray,
                targets: np.ndarray, pad: int = 2) -> np.ndarray:
    """uint8 grid: one row per example, columns input | generated | target.

    A missing input (text-to-image) is drawn mid-gray. Separators are white, `pad` px.
    """
    n, h, w, _ = generated.shape
    inputs = np.where(has_image[:, None, None, None], images, np.uint8(128))
    cells = np.stack([inputs, generated, targets], axis=1)  # (n, 3, h, w, 3)
    grid = np.full((n * (h + pad) + pad, 3 * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(n):  # rows x columns loops over tiles, not pixels
        for c in range(3):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = cells[r, c]
    return grid


class Samples:
    """Sample grid of the first `num_examples` held-out examples (seeds 0..n-1)."""

    def __init__(self, section, config, graphdef, mesh):
        del config, graphdef, mesh
        self.num_examples = int(section.get("num_examples", 8))

    def run(self, ctx: EvalContext) -> Iterator[tuple[str, float]]:
        import cv2

        held = ctx.heldout[0]
        n = min(self.num_examples, len(held.prompts))
        batch = {k: v[:n] for k, v in held.batch.items()}
        generated = ctx.predictor.generate(batch, list(range(n)))
        grid = sample_grid(batch["image"], batch["has_image"], generated, batch["target"])
        if ctx.is_main:
            out = ctx.workdir / "samples"
            out.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / f"step_{ctx.step:06d}.png"),
                        cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
            (out / f"step_{ctx.step:06d}.txt").write_text(
                "\n".join(f"{t}: {p}" for t, p in zip(held.tasks[:n], held.prompts[:n])) + "\n")
            ctx.writer.write_images(ctx.step, {"samples": grid})
        yield "num_examples", float(n)


def _spec(codec, prompt: str, meta: dict) -> dict:
    spec = meta.get("spec") if isinstance(meta, dict) else None
    return dict(spec) if spec is not None else codec.parse_prompt(prompt)


def score(task: str, pred: Any, target: Any) -> dict[str, float]:
    """The table's metrics of one decoded prediction against the decoded target, through the
    task's evaluator (`eval.metrics.for_task`): what `Decoded` logs for a one-example set."""
    ev = metrics.for_task(task)
    ev.add(pred, target)
    return table.summary(task, ev.result())


class Decoded:
    """Generate for held-out examples, decode with the codecs, score per task against the
    decoded targets with `eval.metrics.for_task(task)` (one evaluator per task over every
    example, as the benchmarks and the demo score), logged as `<task>/<key>` with the keys of
    the metric table (`eval.metrics.table`)."""

    def __init__(self, section, config, graphdef, mesh):
        del config, graphdef, mesh
        self.skip = set(section.get("skip_tasks", ("instance",)))

    def run(self, ctx: EvalContext) -> Iterator[tuple[str, float]]:
        import tasks as codecs

        evaluators: dict[str, Any] = {}
        for held in ctx.heldout:
            n = len(held.prompts)
            generated = ctx.predictor.generate(held.batch, list(range(n)))
            for i, task in enumerate(held.tasks):
                if task in self.skip:
                    continue
                ev = evaluators.setdefault(task, metrics.for_task(task))
                if task == "generation":
                    ev.add(generated[i], held.batch["target"][i], name=str(i))
                    continue
                codec = codecs.get(task)
                spec = _spec(codec, held.prompts[i], held.meta[i])
                truth = codec.decode(held.batch["target"][i], **spec)
                if task == "instance":  # the decoded target's masks are the query's ground truth
                    ev.add(codec.decode(generated[i], **spec), truth.masks, category=spec.get("target", ""))
                else:
                    ev.add(codec.decode(generated[i], **spec), truth, name=str(i))
        for task in sorted(evaluators):
            for key, value in table.summary(task, evaluators[task].result()).items():
                yield f"{task}/{key}", value


REGISTRY = {"heldout_loss": HeldoutLoss, "samples": Samples, "decoded": Decoded}


# ---------------------------------------------------------------------------------- runner


class Runner:
    """Runs the configured evaluators when due; built once per training run."""

    def __init__(self, config, workdir: pathlib.Path, graphdef, tokenizer, mesh,
                 writer: metrics_io.MetricWriter):
        self.config, self.workdir, self.graphdef = config, workdir, graphdef
        self.tokenizer, self.mesh, self.writer = tokenizer, mesh, writer
        self.entries = []
        for name, section in config.evaluators.items():
            kind = section.get("kind", name)
            if kind not in REGISTRY:
                raise KeyError(f"config.evaluators.{name}: unknown evaluator {kind!r}; "
                               f"registered: {sorted(REGISTRY)}")
            self.entries.append((name, section, REGISTRY[kind](section, config, graphdef, mesh)))
        self._predictor = None
        self._heldout: dict[tuple[str, int], list[HeldOut]] = {}

    def due(self, step: int, final: bool) -> list:
        out = []
        for name, section, ev in self.entries:
            every = int(section.get("every", 0))
            if (every > 0 and step % every == 0) or (final and section.get("at_end", True)):
                out.append((name, section, ev))
        return out

    def maybe_run(self, step: int, state: dict, *, final: bool) -> dict[str, float]:
        """Run the evaluators due at `step` on `state`; returns and logs their metrics."""
        due = self.due(step, final)
        if not due:
            return {}
        params = state["ema"] if state.get("ema") is not None else state["params"]
        if self._predictor is None:
            self._predictor = predict.Predictor(self.config, self.graphdef, params,
                                                state["model_state"], self.tokenizer,
                                                mesh=self.mesh)
        predictor = self._predictor
        predictor.params, predictor.model_state = params, state["model_state"]
        results = {}
        try:
            for name, section, ev in due:
                key = (str(section.get("split", "validation")), int(section.get("num_batches", 1)))
                if key not in self._heldout:
                    self._heldout[key] = load_heldout(self.config, self.tokenizer, *key)
                ctx = EvalContext(step, self.workdir, predictor, self.writer, self._heldout[key],
                                  jax.process_index() == 0)
                t0 = time.perf_counter()
                metrics = {f"{name}/{k}": v for k, v in ev.run(ctx)}
                metrics[f"{name}/seconds"] = time.perf_counter() - t0
                self.writer.write_scalars(step, metrics)
                results.update(metrics)
        finally:
            # The train step donates these buffers next; drop the references.
            predictor.params = predictor.model_state = None
        return results
