"""The demo's report: a Markdown file, image grids and the loss curve (PNG).

    write_grids(out, heldout, results, rows)      grid_<task>.png: input | prediction | truth
    write_generation_grid(path, samples)          grid_generation.png: input | generated | reference
    plot_loss_curve(metrics_jsonl, path)          loss_curve.png: total and per-task loss
    write_report(out, config, results, stats)     report.md

`vision_banana.demo` computes the numbers; this module only lays them out. Figures use
matplotlib's Agg backend (no display needed); images are drawn with nearest-neighbour
interpolation so that 32x32 predictions show their real pixels.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Mapping

import numpy as np

from eval.metrics import grids, jsonio, table

TITLES = {"depth": "Metric depth", "normals": "Surface normals", "semantic": "Semantic segmentation",
          "instance": "Instance segmentation"}
BASELINES = {
    "depth": "constant depth: the median finite depth of {n} training scenes ({median:.2f} m) "
             "at every pixel",
    "normals": "constant normal: the mean normal direction of {n} training scenes "
               "({normal}) at every pixel",
    "semantic": "majority class: the most frequent class of {n} training scenes "
                "(`{majority}`) at every pixel",
    "instance": "one mask covering the whole image, score 1, per query (the honest trivial "
                "answer to \"segment every <class>\")",
}
DEFINITIONS = """\
- **Depth** (`eval.metrics.DepthEvaluator`, Marigold protocol): per image over the pixels with
  finite ground truth (sky excluded), predictions clipped to [0.001, 100] m, no alignment
  (metric depth); AbsRel = mean |p - g| / g, delta1 = fraction of pixels with
  max(p/g, g/p) < 1.25; both averaged over images.
- **Normals** (`eval.metrics.NormalsEvaluator`, DSINE protocol): angular error
  arccos(p . g / |p||g|) in degrees over the pixels with a ground-truth normal (sky excluded),
  pooled over all pixels of the set; mean (and median).
- **Semantic** (`eval.metrics.ConfusionMatrix`): one confusion matrix over the set, 9 classes
  (sky, floor, wall, ceiling, sphere, box, cylinder, cone, torus); IoU = TP / (TP + FP + FN)
  per class, mIoU = mean over classes present in the ground truth or the prediction; pixel
  accuracy = correct / labelled pixels. Pixels the decoder leaves unmatched count as wrong.
- **Instance** (`eval.metrics.CocoSegmEvaluator` = pycocotools COCOeval, iouType "segm"): one
  query per held-out scene ("segment every <class>", a class drawn among the visible ones);
  ground truth = every instance of that class covering at least 4 pixels; predictions = the
  decoded masks with the codec's confidence scores. AP = mean over IoU 0.50:0.95 (COCO), AP50
  at IoU 0.5; 100 detections per image.
"""
SIMPLIFICATIONS = """\
The demo keeps the recipe (one generator; a mixture of its own generation data and perception
tasks; every target an RGB image; decoded by the task codecs) but makes it learnable by a
~2M-parameter model in a few CPU minutes:

- **Perception share {perception:.0%}** of the examples (generation {generation:.0%}). The paper
  mixes in "a very small ratio" of vision data; a tiny model trained for minutes would see too
  few perception examples with that.
- **Fixed colors.** Semantic classes always take the same colors (stated in the prompt, as the
  recipe says), and instances take a fixed color sequence from left to right. The paper
  draws a new mapping per example and the model picks instance colors.
- **Prompt window of {text_length} bytes.** The byte text encoder reads the first
  {text_length} bytes: the instruction and the instance category of every phrasing; the
  semantic color mapping that follows is cut (harmless with fixed colors).
- **No colormap augmentation, no crops.** Depth targets use the rainbow path only; images are
  only flipped (a crop would change the apparent metric depth of the fixed synthetic camera).
- **Input image on channels** (`model.context_mode="channels"`), not appended to the sequence
  as Flux Kontext does: half the tokens, about 2x faster steps on the CPU.
- **One-step perception training.** Half the examples with an input image are trained on
  the exact query the one-step perception mode asks at test time (t = 1, noise at its mean;
  `flow.onestep_prob`), the single-step regression of Lotus / GenPercept; the rest keep the
  rectified-flow objective. Without it the tiny model's one-step outputs are noise.
- **{res}x{res} pixels**, {steps} steps of batch {batch}.
"""


# Strict JSON (NaN / inf -> null): the project's one helper.
jsonable = jsonio.jsonable


def image_grid(path: pathlib.Path, columns: Mapping[str, np.ndarray], labels: list[str],
               title: str) -> None:
    """PNG of one row per example; `columns` maps a column title to uint8 (N, H, W, 3)
    images (None entries: blank); `labels` (N) are written left of each row. Drawn by the
    project's one grid helper (`eval.metrics.grids`), nearest-neighbour enlarged."""
    names = list(columns)
    rows = []
    for r in range(len(labels)):
        shapes = [columns[n][r].shape for n in names if columns[n][r] is not None]
        blank = np.full(shapes[0] if shapes else (32, 32, 3), 255, np.uint8)
        rows.append([blank if columns[n][r] is None else np.asarray(columns[n][r]) for n in names])
    grids.image_grid(path, rows, col_titles=names, row_titles=labels, title=title, panel_height=128,
                     label_width=260)


def _figure(rows: int, cols: int, cell: float = 1.7, blank: bool = True):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell + 2.6, rows * cell + 0.5),
                             squeeze=False)
    for ax in axes.ravel() if blank else ():
        ax.set_xticks([])
        ax.set_yticks([])
    return plt, fig, axes


def _short(text: str, width: int = 34) -> str:
    """A prompt cut to fit beside a grid row, on two lines at most."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else "")


def encode_prediction(task: str, pred, spec: Mapping) -> np.ndarray:
    """uint8 (H, W, 3): a decoded prediction drawn back in its task's target encoding (what was
    scored, not the raw generated image)."""
    import tasks

    codec = tasks.get(task)
    if task == "semantic":
        return codec.encode(np.asarray(pred), spec["colors"])
    if task == "instance":
        return codec.encode(pred.masks)
    return codec.encode(np.asarray(pred, np.float32))


def write_grids(out: pathlib.Path, heldout: Mapping, results: Mapping, rows: int) -> None:
    """grid_<task>.png for each evaluated task: the first `rows` held-out examples, as
    input | decoded prediction (drawn in the target encoding) | ground-truth target, the row
    labelled with its prompt."""
    for task, held in heldout.items():
        n = min(rows, len(held.prompts))
        labels = [_short(p) for p in held.prompts[:n]]
        shown = [encode_prediction(task, p, spec) for p, spec in zip(held.predicted[:n], held.specs)]
        columns = {"input": held.images[:n], "prediction (decoded)": shown,
                   "ground truth (target)": held.targets[:n]}
        mode = results.get("predict", {})
        image_grid(out / f"grid_{task}.png", columns, labels,
                   f"{TITLES.get(task, task)}: held-out scenes, {mode.get('mode', '')} "
                   f"sampler, {mode.get('num_steps', '')} step(s)")


def write_generation_grid(path: pathlib.Path, samples: Mapping) -> None:
    """Text-to-image and edit samples: input (blank for text-to-image) | generated | the
    reference image of the prompt."""
    n = len(samples["prompts"])
    inputs = [samples["inputs"][i] if samples["has_image"][i] else None for i in range(n)]
    image_grid(path, {"input (edits)": inputs, "generated": samples["generated"],
                      "reference": samples["targets"]},
               [_short(p) for p in samples["prompts"]],
               f"Generation share: held-out prompts, Euler sampler, {samples['num_steps']} "
               f"steps from noise")


read_jsonl = jsonio.read_jsonl


def plot_loss_curve(metrics_jsonl: pathlib.Path, path: pathlib.Path) -> None:
    """loss_curve.png: the training loss (mean over each logging interval) and the per-task
    losses against the step, log scale."""
    records = [r for r in read_jsonl(metrics_jsonl) if "loss" in r]
    if not records:
        raise ValueError(f"{metrics_jsonl} holds no training loss record")
    plt, fig, axes = _figure(1, 1, cell=4.0, blank=False)
    ax = axes[0, 0]
    steps = [r["step"] for r in records]
    tasks = sorted({k.split("/", 1)[1] for r in records for k in r if k.startswith("loss/")})
    for task in tasks:
        pts = [(r["step"], r[f"loss/{task}"]) for r in records if f"loss/{task}" in r]
        ax.plot(*zip(*pts), lw=1, alpha=0.8, label=task)
    ax.plot(steps, [r["loss"] for r in records], color="black", lw=2, label="all (mean)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("rectified-flow loss (velocity MSE)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("Training loss per logging interval", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- Markdown


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def results_table(results: Mapping) -> list[str]:
    """Markdown rows: task, metric, model, baseline, codec ceiling, beats baseline."""
    lines = ["| task | metric | model | trivial baseline | codec ceiling | beats baseline |",
             "|---|---|---|---|---|---|"]
    for task, r in results["tasks"].items():
        for metric in table.headline(task) + table.extra(task):
            name = metric.key
            verdict = ("**yes**" if r["beats"][name] else "**NO**") if name in r["beats"] else \
                "(not scored)"
            lines.append(f"| {task} | {metric.describe()} | {_fmt(r['model'].get(name))} "
                         f"| {_fmt(r['baseline'].get(name))} | {_fmt(r['ceiling'].get(name))} "
                         f"| {verdict} |")
    return lines


def write_report(out: pathlib.Path, config, results: Mapping, stats: Mapping,
                 generation: bool = True) -> pathlib.Path:
    """Write `out/report.md` (the grids, loss curve and results.json sit beside it)."""
    info, timings, pred = results["info"], results["timings"], results["predict"]
    n, steps = info["num_scenes"], info["steps"]
    shares = {name: float(src.weight) for name, src in config.data.sources.items()}
    total = sum(shares.values())
    generation_share = sum(w for name, w in shares.items()
                           if config.data.sources[name].task == "generation") / total
    res = int(config.data.resolution[0])
    verdict = ("Every task beats its trivial baseline on every headline metric."
               if results["all_beat_baseline"] else
               "**Not every task beats its trivial baseline** (see the NO rows).")
    machine = info["machine"]
    lines = [
        "# Vision Banana demo report", "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
        f"`{info['command'] or 'vision_banana.demo.run_demo'}` on {machine['cpu_count']} CPU "
        f"cores ({machine['devices']}, jax {machine['jax']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in machine['load_average'] or [])}).", "",
        f"One tiny Flux-style generator ({info['num_params'] / 1e6:.2f}M trainable parameters) "
        f"was instruction-tuned for {steps} steps on a mixture of generation data and four "
        f"perception tasks whose targets are RGB images, then asked to generate those images for "
        f"{n} held-out synthetic scenes per task; the task codecs decoded them into depth in "
        f"metres, unit normals, class labels and instance masks. {verdict}", "",
        "## Results on held-out scenes", "",
        *results_table(results), "",
        "Trivial baselines (scored with the same code on the same scenes):", "",
        *[f"- **{task}**: " + BASELINES[task].format(
            n=stats["num_scenes"], median=stats["median_depth_m"],
            normal="(" + ", ".join(f"{v:.2f}" for v in stats["mean_normal"]) + ")",
            majority=stats["majority_class"]) for task in results["tasks"]], "",
        "Codec ceiling: the ground-truth target image itself decoded by the same codec, i.e. the "
        "best score an exact generation could reach through the 8-bit RGB encoding.", "",
        f"Held-out data: the first {n} scenes of the synthetic source's `test` split (scene "
        f"seed {int(config.seed)}; the training split draws disjoint scenes), one example per "
        f"scene and task, built by the training builders. Predictions: `Predictor.from_workdir` "
        f"(checkpoint step {pred['checkpoint_step']}, {pred['weights']} weights), sampler "
        f"`{pred['mode']}` with {pred['num_steps']} step(s), seed = example index.", "",
        "## Metric definitions", "", DEFINITIONS,
        "## Training", "",
        "![loss curve](loss_curve.png)", "",
        *config_lines(config, info), "",
        "## Time per stage", "",
        "| stage | wall s | CPU s (user + system) |", "|---|---|---|",
        *[f"| {stage} | {timings['wall_s'][stage]:.1f} | {timings['cpu_s'][stage]:.1f} |"
          for stage in timings["wall_s"]],
        f"| total (process) | {timings['total_wall_s']:.1f} | {timings['total_cpu_s']:.1f} |", "",
        "The train stage includes compiling the train step; the evaluate stage includes compiling "
        "the sampler" + (" (twice: one-step perception and Euler generation)." if generation
                         else "."), "",
        "## Image grids", "",
        "Rows: the first held-out examples (prompt on the left). Columns: the input image, the "
        "model's decoded prediction drawn back in the target encoding (what was scored), the "
        "ground-truth target image.", "",
        *[f"![{task}](grid_{task}.png)" for task in results["tasks"]],
        *(["", "![generation](grid_generation.png)"] if generation else []), "",
        "## Demo simplifications", "",
        SIMPLIFICATIONS.format(perception=1 - generation_share, generation=generation_share,
                               text_length=int(config.model.text_encoder.max_length), res=res,
                               steps=steps, batch=int(config.train.global_batch_size)),
        "## Files", "",
        "- `results.json`: every number above; `run/`: the training run (config.json, "
        "metrics.jsonl, TensorBoard events, the checkpoint: "
        "`python -m vision_banana.predict --workdir <out>/run ...` uses it).", "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def config_lines(config, info: Mapping) -> list[str]:
    """Bullet points of the settings that define the run (the full config: run/config.json)."""
    m, o, t = config.model, config.optim, config.train
    sources = ", ".join(f"{name} ({src.task}) {float(src.weight):.0%}"
                        for name, src in config.data.sources.items())
    return [
        f"- config: `vision_banana/configs/demo.py` with `{info['config_arg'] or '(defaults)'}`"
        f" (full: `run/config.json`)",
        f"- steps {int(t.steps)}, global batch {int(t.global_batch_size)}, "
        f"{int(config.data.resolution[0])}x{int(config.data.resolution[1])} pixels, seed "
        f"{int(config.seed)}",
        f"- mixture `synthetic_perception_demo`: {sources}",
        f"- model: Flux MMDiT hidden {int(m.flux.hidden_size)}, {int(m.flux.depth)} double + "
        f"{int(m.flux.depth_single_blocks)} single blocks, patch autoencoder p="
        f"{int(m.autoencoder.patch_size)}, byte text encoder ({int(m.text_encoder.max_length)}"
        f" bytes), input image on {m.context_mode}",
        f"- AdamW lr {float(o.lr):g}, warmup {int(o.warmup_steps)}, cosine to "
        f"{float(o.end_lr_factor):g} x lr, weight decay {float(o.weight_decay):g}, clip "
        f"{float(o.clip_norm):g}, EMA {float(o.ema_decay):g}",
        f"- rectified flow, logit-normal timesteps (mean {float(config.flow.logit_mean):g}, "
        f"std {float(config.flow.logit_std):g}), prompt dropout {float(config.flow.uncond_prob):g}, "
        f"one-step perception share {float(config.flow.get('onestep_prob', 0.0)):g}",
    ]
