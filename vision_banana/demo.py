"""`make demo`: instruction-tune the tiny generator on synthetic scenes, evaluate, report.

    python -m vision_banana.demo --out demo_out            # about 5 minutes on 2 CPU cores
    python -m vision_banana.demo --out /tmp/q --quick      # smoke run (tests)

Stages (each timed, wall and CPU):
  1. setup     the config (`vision_banana/configs/demo.py`), held-out scenes, baseline statistics
  2. train     `train.train_and_evaluate` on the `synthetic_perception_demo` mixture:
               generation (text-to-image, edits) + depth + normals + semantic + instance, every
               target an RGB image; checkpoint and metrics under `<out>/run`
  3. evaluate  the benchmark `eval.synthetic` (the one benchmark runner, `eval.runner`) per
               task on the held-out scenes (split "test", never trained on): the checkpoint
               predicts through `eval.from_checkpoint` (the Predictor's geometry), the codecs
               decode, `eval.metrics.for_task` scores; the trivial baselines and the codec
               ceiling (the target image itself decoded) are predictions folders scored by the
               same run, under `<out>/eval/<task>/`
  4. report    `<out>/report.md`, `results.json`, image grids and the loss curve
               (`vision_banana.report`)

Exit status 0 when every task beats its trivial baseline on every metric, 1 otherwise (the
report says which).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from eval import synthetic
from eval.metrics import jsonio, table

STAGES = ("setup", "train", "evaluate", "report")
PERCEPTION = synthetic.TASKS
# (metric, "lower" | "higher" is better) per task, read from the metric table: the first ones
# decide "beats the baseline", the others are reported beside them.
HEADLINE = {t: tuple((m.key, m.direction) for m in table.headline(t)) for t in PERCEPTION}
EXTRA = {t: tuple((m.key, m.direction) for m in table.extra(t)) for t in PERCEPTION}
# Instances smaller than this many pixels are not decoded. The codec's default, max(16, 1e-4 HW),
# suits real images; at 32x32 a quarter of the synthetic objects cover under 16 px.
INSTANCE_MIN_AREA = 6
SEED_STREAM = synthetic.SEED_STREAM  # rng stream of the held-out examples' prompt phrasings


class StageTimer:
    """Wall and CPU seconds (user + system, all threads of this process) per stage."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str, what: str):
        number = STAGES.index(name) + 1 if name in STAGES else 0
        self.log(f"[{number}/{len(STAGES)}] {name}: {what}")
        wall0, cpu0 = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = time.perf_counter() - wall0
        self.cpu[name] = time.process_time() - cpu0
        self.log(f"      {name} done in {self.wall[name]:.1f} s wall, {self.cpu[name]:.1f} s CPU")

    def table(self) -> dict:
        total_wall = time.perf_counter() - self._start
        return {"wall_s": dict(self.wall), "cpu_s": dict(self.cpu), "total_wall_s": total_wall,
                "total_cpu_s": time.process_time()}


def _log(message: str) -> None:
    print(message, flush=True)


def machine_info() -> dict:
    import jax

    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__,
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


# ---------------------------------------------------------------------------------- held-out data


@dataclasses.dataclass
class HeldOut:
    """One task's held-out examples, built as the training examples are (minus the flip).

    images, targets: uint8 (N, H, W, 3); prompts: N str; specs: N decode specs
    (`meta["spec"]`); truth: the renderer's exact labels: depth float32 (N, H, W) metres (+inf
    on sky), normals float32 (N, H, W, 3) unit (0 on sky), semantic int32 (N, H, W) class
    indices, instance a list of N bool (K_i, H, W) masks of the prompt's class;
    categories: the prompt's class per example (instance only); predicted: the model's decoded
    predictions once evaluated (as `eval.synthetic` read them back from its folder).
    """

    task: str
    images: np.ndarray
    prompts: list[str]
    targets: np.ndarray
    specs: list[dict]
    truth: Any
    categories: list[str] | None = None
    predicted: list | None = None


def scene_source(config, split: str, num_records: int):
    """The demo's synthetic scenes of `split`, rendered as the training scenes are."""
    from data_mix.synthetic import SyntheticScenes

    kwargs = dict(config.data.sources.scenes_depth.kwargs)
    kwargs.update(split=split, num_records=int(num_records))
    return SyntheticScenes(**kwargs)


def make_heldout(config, num_scenes: int) -> dict[str, HeldOut]:
    """The first `num_scenes` scenes of the "test" split (never trained on), one example per
    scene and task, built as `eval.synthetic` builds them (the training builders with the
    demo's options, `synthetic.build_example`), with the renderer's truth."""
    source = scene_source(config, "test", num_scenes)
    records = [source[i] for i in tqdm(range(num_scenes), desc="held-out scenes", leave=False)]
    out = {}
    for task in PERCEPTION:
        examples = [synthetic.build_example(task, i, r, int(config.seed)) for i, r in enumerate(records)]
        specs = [synthetic.decode_spec(task, e, INSTANCE_MIN_AREA) for e in examples]
        held = HeldOut(task, np.stack([e["image"] for e in examples]), [e["prompt"] for e in examples],
                       np.stack([e["target"] for e in examples]), specs, None)
        if task == "instance":
            held.categories = [s["target"] for s in specs]
            held.truth = [_instance_truth(r, s) for r, s in zip(records, specs)]
        else:
            held.truth = np.stack([r[task] for r in records])
        out[task] = held
    return out


def _instance_truth(record: dict, spec: dict) -> np.ndarray:
    """bool (K, H, W): the instances of the prompt's class the builder painted."""
    masks = np.asarray(record["instance_masks"], bool)
    names = np.asarray(record["instance_classes"], dtype=object)
    keep = (names == spec["target"]) & (masks.sum((1, 2)) >= 4)  # builder's min_pixels
    if int(keep.sum()) != len(spec["instance_colors"]):
        raise ValueError(f"scene {record['meta']['id']}: {int(keep.sum())} {spec['target']} "
                         f"instances, but the target paints {len(spec['instance_colors'])}")
    return masks[keep]


def train_statistics(config, num_scenes: int) -> dict:
    """What the trivial baselines predict, from `num_scenes` training scenes: the median
    finite depth (metres), the mean normal direction (unit), the most frequent class."""
    source = scene_source(config, "train", num_scenes)
    records = [source[i] for i in range(num_scenes)]
    depth = np.stack([r["depth"] for r in records])
    normals = np.stack([r["normals"] for r in records]).reshape(-1, 3)
    normals = normals[np.linalg.norm(normals, axis=-1) > 0.5].mean(0)
    labels = np.stack([r["semantic"] for r in records]).ravel()
    classes = list(records[0]["classes"])
    majority = int(np.argmax(np.bincount(labels[labels >= 0], minlength=len(classes))))
    return {"median_depth_m": float(np.median(depth[np.isfinite(depth)])),
            "mean_normal": (normals / np.linalg.norm(normals)).tolist(),
            "majority_class": classes[majority], "majority_index": majority,
            "classes": classes, "num_scenes": int(num_scenes)}


# ---------------------------------------------------------------------------------- scoring


def decode(task: str, rgb: np.ndarray, spec: dict):
    """A generated (or target) uint8 (H, W, 3) image decoded with the task's codec (`spec`:
    the held-out example's decode arguments, `synthetic.decode_spec`)."""
    import tasks

    return tasks.get(task).decode(rgb, **spec)


def baseline_predictions(held: HeldOut, stats: dict) -> list:
    """The trivial baseline per example: constant median depth, constant mean normal, the
    majority class everywhere, one instance mask covering the whole image with score 1."""
    from tasks.instance import Instances

    n, h, w = held.images.shape[:3]
    if held.task == "depth":
        return [np.full((h, w), stats["median_depth_m"], np.float32)] * n
    if held.task == "normals":
        return [np.broadcast_to(np.asarray(stats["mean_normal"], np.float32), (h, w, 3))] * n
    if held.task == "semantic":
        return [np.full((h, w), stats["majority_index"], np.int32)] * n
    full = Instances(np.ones((1, h, w), bool), np.ones(1, np.float32),
                     np.zeros((1, 3), np.uint8))
    return [full] * n


def write_predictions(folder: pathlib.Path, task: str, predictions: Sequence[Any]) -> pathlib.Path:
    """Decoded predictions (one per held-out scene) as an `eval.synthetic` predictions folder."""
    ext, writer = synthetic.WRITERS[task]
    for i, p in enumerate(predictions):
        writer(folder / f"{i:04d}{ext}", p)
    return folder


def _beats(model: dict, baseline: dict, metrics) -> dict[str, bool]:
    out = {}
    for name, better in metrics:
        m, b = model.get(name), baseline.get(name)
        ok = m is not None and b is not None and (m < b if better == "lower" else m > b)
        out[name] = bool(ok)
    return out


def evaluate(run_dir: pathlib.Path, config, heldout: dict[str, HeldOut], stats: dict,
             out: pathlib.Path, log: Callable[[str], None] = print) -> dict:
    """Scores the checkpoint, the trivial baseline and the codec ceiling on every task with the
    benchmark `eval.synthetic` (one runner run per task, its files under `out/eval/<task>/`);
    stores the model's decoded predictions in `held.predicted`. Returns {"tasks": {task:
    {"model", "baseline", "ceiling", "beats", "seconds"}}, "all_beat_baseline": bool,
    "predict": sampler settings}; metric names are the metric table's keys."""
    results: dict[str, Any] = {"tasks": {}}
    scenes = dict(config.data.sources.scenes_depth.kwargs)
    checkpoint = {}
    for task, held in heldout.items():
        t0 = time.perf_counter()
        folder = out / "eval" / task
        baseline = write_predictions(folder / "baseline", task, baseline_predictions(held, stats))
        ceiling = write_predictions(folder / "ceiling", task, [decode(task, t, s) for t, s in
                                                               zip(held.targets, held.specs)])
        entries = synthetic.main([
            "--task", task, "--num-scenes", str(len(held.prompts)), "--resolution", str(scenes["size"]),
            "--scene-seed", str(scenes["seed"]), "--example-seed", str(int(config.seed)),
            "--instance-min-area", str(INSTANCE_MIN_AREA), "--workdir", str(run_dir), "--name", "model",
            "--baseline", f"baseline={baseline}", "--baseline", f"ceiling={ceiling}",
            "--batch-size", str(int(config.predict.batch_size)), "--out", str(folder), "--worst", "0",
            "--no-progress"])
        checkpoint = entries["model"]["checkpoint"]
        reader = synthetic.READERS[task]
        held.predicted = [reader(folder / "predictions" / "model" / f"{i:04d}{synthetic.WRITERS[task][0]}")
                          for i in range(len(held.prompts))]
        scores = {name: entries[name]["result"]["metrics_table"] for name in ("model", "baseline", "ceiling")}
        scores["beats"] = _beats(scores["model"], scores["baseline"], HEADLINE[task])
        scores["seconds"] = time.perf_counter() - t0
        results["tasks"][task] = scores
        shown = ", ".join(f"{k} {scores['model'][k]:.3f} (baseline {scores['baseline'][k]:.3f})"
                          for k, _ in HEADLINE[task] + EXTRA[task])
        log(f"      {task:9s} {shown}")
    results["all_beat_baseline"] = all(all(r["beats"].values())
                                       for r in results["tasks"].values())
    results["predict"] = {"mode": str(config.predict.mode), "num_steps": int(checkpoint.get("num_steps", 0)),
                          "weights": "EMA" if checkpoint.get("ema", True) else "raw",
                          "checkpoint_step": checkpoint.get("step")}
    return results


def sample_generation(run_dir: pathlib.Path, config, count: int, num_steps: int = 8):
    """`count` text-to-image and `count` edit samples of held-out ("test") generation records,
    drawn from noise with `num_steps` Euler steps (the generation share of the recipe); None
    when count is 0."""
    if count <= 0:
        return None
    from data_mix.synthetic import SyntheticEdits, SyntheticTextToImage
    from vision_banana import predict

    kwargs = dict(config.data.sources.edits.kwargs, split="test", num_records=count)
    t2i = [SyntheticTextToImage(**kwargs)[i] for i in range(count)]
    edits = [SyntheticEdits(**kwargs)[i] for i in range(count)]
    predictor = predict.Predictor.from_workdir(run_dir, mode="euler", num_steps=num_steps)
    h, w = t2i[0]["target"].shape[:2]
    prompts = [r["prompt"] for r in t2i] + [r["prompt"] for r in edits]
    batch = predictor.make_batch(np.zeros((2 * count, h, w, 3), np.uint8), prompts)
    batch["has_image"][:count] = False  # text-to-image rows have no input image
    batch["image"][count:] = np.stack([r["image"] for r in edits])
    generated = predictor.generate(batch, list(range(2 * count)))
    return {"prompts": prompts, "inputs": batch["image"], "has_image": batch["has_image"],
            "generated": generated, "targets": np.stack([r["target"] for r in t2i + edits]),
            "num_steps": num_steps}


def count_params(predictor) -> int:
    import jax

    return int(sum(x.size for x in jax.tree.leaves(predictor.params)))


# ---------------------------------------------------------------------------------- the job


def run_demo(out: str | pathlib.Path, *, config_arg: str = "", num_scenes: int = 64,
             num_devices: int | None = None, grid_rows: int = 6, generation_samples: int = 4,
             command: str = "", log: Callable[[str], None] = _log) -> dict:
    """Train, evaluate and report into `out` (emptied first); returns the results dict.

    config_arg: options of `vision_banana/configs/demo.py` ("steps=300,seed=1", "quick=1").
    num_scenes: held-out scenes per task. num_devices: use only the first N devices
    (default all). grid_rows: examples per task grid. generation_samples: text-to-image /
    edit samples drawn with the Euler sampler for the generation grid (0: none).
    """
    import absl.flags

    # grain's worker code reads absl flags; mark them parsed when not run under absl.app.
    if not absl.flags.FLAGS.is_parsed():
        absl.flags.FLAGS.mark_as_parsed()
    from vision_banana import predict, report, train
    from vision_banana.configs import demo as demo_config

    out = pathlib.Path(out)
    if out.exists():
        shutil.rmtree(out)  # a rerun must not resume the previous run's checkpoint
    out.mkdir(parents=True)
    timer = StageTimer(log)
    run_dir = out / "run"

    with timer.stage("setup", "config, held-out scenes, baseline statistics"):
        config = demo_config.get_config(config_arg)
        if num_devices is not None:
            config.mesh.num_devices = int(num_devices)
        heldout = make_heldout(config, num_scenes)
        stats = train_statistics(config, num_scenes)
        log(f"      {num_scenes} held-out scenes per task; training statistics from "
            f"{num_scenes} training scenes: median depth {stats['median_depth_m']:.2f} m, "
            f"majority class {stats['majority_class']!r}")

    steps = int(config.train.steps)
    with timer.stage("train", f"{steps} steps of batch {config.train.global_batch_size} "
                              f"(the first step waits for compilation)"):
        train.train_and_evaluate(config, run_dir)

    with timer.stage("evaluate", "eval.synthetic on the held-out scenes: predict, decode, score"):
        results = evaluate(run_dir, config, heldout, stats, out, log=log)
        samples = sample_generation(run_dir, config, generation_samples)
        predictor = predict.Predictor.from_workdir(run_dir)

    with timer.stage("report", f"report.md, grids and loss curve in {out}"):
        info = {"command": command, "config_arg": config_arg, "num_scenes": num_scenes,
                "steps": steps, "machine": machine_info(),
                "num_params": count_params(predictor)}
        report.write_grids(out, heldout, results, grid_rows)
        if samples is not None:
            report.write_generation_grid(out / "grid_generation.png", samples)
        report.plot_loss_curve(run_dir / "metrics.jsonl", out / "loss_curve.png")
    results["timings"] = timer.table()
    results["info"] = info
    report.write_report(out, config, results, stats, generation=samples is not None)
    jsonio.write_json(out / "results.json", results)
    verdict = "every task beats its trivial baseline" if results["all_beat_baseline"] else \
        "NOT every task beats its trivial baseline (see the report)"
    log(f"done in {results['timings']['total_wall_s']:.0f} s wall "
        f"({results['timings']['total_cpu_s']:.0f} s CPU): {verdict}. "
        f"Report: {out / 'report.md'}")
    return results


def _use_cpu_cores(count: int) -> None:
    """Expose `count` CPU devices to XLA (set before jax is imported): the tiny model's ops are
    too small for XLA's intra-op threads, so a data-parallel mesh over one device per core is
    what keeps both cores busy. An explicit XLA_FLAGS device count is left alone."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and count > 1:
        os.environ["XLA_FLAGS"] = (f"{flags} --xla_force_host_platform_device_count="
                                   f"{count}").strip()


class _Deprecated(argparse.Action):
    """Stores the value; an old underscore spelling (`--num_scenes`) prints a deprecation note."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string and "_" in option_string:
            print(f"note: {option_string} is deprecated; use {option_string.replace('_', '-')}",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (emptied first)")
    p.add_argument("--seed", type=int, default=0, help="model, data and scene seed")
    p.add_argument("--steps", type=int, default=None, help="training steps (config default)")
    p.add_argument("--quick", action="store_true", help="smoke run: one-block model, 4 steps")
    p.add_argument("--num-scenes", "--num_scenes", type=int, default=64, dest="num_scenes",
                   action=_Deprecated, help="held-out scenes per task (--num_scenes: old spelling)")
    p.add_argument("--config", default="", help="more options of configs/demo.py, "
                                                "'key=value,...'")
    p.add_argument("--cores", type=int, default=min(os.cpu_count() or 1, 2),
                   help="CPU devices for the data-parallel mesh (CPU runs only)")
    args = p.parse_args(argv)
    _use_cpu_cores(args.cores)
    options = [f"seed={args.seed}"] + (["quick=1"] if args.quick else [])
    if args.steps is not None:
        options.append(f"steps={args.steps}")
    options += [o for o in args.config.split(",") if o]
    command = " ".join(["python -m vision_banana.demo"] + list(sys.argv[1:] if argv is None
                                                               else argv))
    results = run_demo(args.out, config_arg=",".join(options), num_scenes=args.num_scenes,
                       command=command)
    return 0 if results["all_beat_baseline"] else 1


if __name__ == "__main__":
    sys.exit(main())
