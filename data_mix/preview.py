"""Look at what a mixture feeds the generator: a grid of examples, a row per task.

    python -m data_mix.preview --mixture synthetic_demo --out grid.png [--n 16]
    python -m data_mix.preview --mixture cityscapes_mix --root /data/cityscapes --out grid.png

Each cell shows the input image (a gray "text to image" panel when there is none) beside the
target the generator must produce, with the prompt wrapped underneath. Examples are the
mixture's own (global indices in order), picked so every task of the mixture appears, about
n / (number of tasks) per task.
"""

from __future__ import annotations

import argparse
import inspect
import math
import pathlib
import textwrap

import numpy as np

from data_mix import mixture as mixture_lib
from data_mix import mixtures


def pick_examples(mixture: mixture_lib.Mixture, n: int, *, max_scan: int = 100_000) -> dict[str, list[dict]]:
    """{task: examples} with up to ceil(n / tasks) per task, the first global indices of each task.

    Only the chosen examples are built: `source_of` tells the task of an index without loading.
    """
    per_task = max(1, math.ceil(n / len(mixture.tasks)))
    chosen: dict[str, list[int]] = {t: [] for t in mixture.tasks}
    for g in range(max_scan):
        task = mixture.source_of(g).task
        if len(chosen[task]) < per_task:
            chosen[task].append(g)
            if all(len(v) >= per_task for v in chosen.values()):
                break
    return {t: [mixture.example(g) for g in idx] for t, idx in chosen.items() if idx}


def render_grid(examples: dict[str, list[dict]], out: str | pathlib.Path, *, wrap: int = 58,
                max_lines: int = 9, dpi: int = 110) -> pathlib.Path:
    """Writes the grid PNG (or any format matplotlib infers from the suffix); returns its path."""
    import matplotlib
    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    tasks = list(examples)
    cols = max(len(v) for v in examples.values())
    texts = {t: [_wrapped(ex["prompt"], wrap, max_lines) for ex in examples[t]] for t in tasks}
    cell_w, img_h, line_h = 4.2, 2.1, 0.15  # inches
    heights = []
    for t in tasks:  # each row's text band fits its longest prompt
        heights += [img_h, line_h * max(s.count("\n") + 1 for s in texts[t]) + 0.25]
    fig = plt.figure(figsize=(cols * cell_w, sum(heights)), dpi=dpi)
    grid = fig.add_gridspec(len(tasks) * 2, cols, height_ratios=heights,
                            hspace=0.12, wspace=0.06, left=0.01, right=0.99, top=0.99, bottom=0.01)
    for r, task in enumerate(tasks):
        for c, ex in enumerate(examples[task]):
            ax = fig.add_subplot(grid[2 * r, c])
            ax.imshow(_side_by_side(ex))
            ax.set_xticks([]), ax.set_yticks([])
            source = ex.get("meta", {}).get("source", "")
            ax.set_title(f"{task}  ·  {source}  ·  input | target", fontsize=8, loc="left")
            tx = fig.add_subplot(grid[2 * r + 1, c])
            tx.axis("off")
            tx.text(0.0, 1.0, texts[task][c], va="top", ha="left", fontsize=7, family="monospace",
                    transform=tx.transAxes)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _wrapped(prompt: str, width: int, max_lines: int) -> str:
    lines = textwrap.wrap(prompt, width) or [""]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1][: width - 1] + "…"]
    return "\n".join(lines)


def _side_by_side(example: dict) -> np.ndarray:
    """uint8 (H, 2W + 6, 3): input (or a gray panel), a white gap, target."""
    target = example["target"]
    image = example.get("image")
    if image is None:
        image = np.full_like(target, 128)
        # A diagonal cross marks "no input" without needing text inside the image.
        h, w = image.shape[:2]
        idx = np.arange(min(h, w))
        image[(idx * h) // min(h, w), (idx * w) // min(h, w)] = 90
        image[(idx * h) // min(h, w), w - 1 - (idx * w) // min(h, w)] = 90
    gap = np.full((target.shape[0], 6, 3), 255, np.uint8)
    return np.concatenate([image, gap, target], axis=1)


def _required(name: str) -> list[str]:
    """Arguments the mixture's factory has no default for (e.g. cityscapes_mix's `root`)."""
    params = inspect.signature(mixtures.MIXTURES[name]).parameters.values()
    return [p.name for p in params if p.default is inspect.Parameter.empty]


def mixture_kwargs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The factory keyword arguments given by --root / --arg, checked against its signature
    (parser.error naming a missing or unknown argument, before any data is read)."""
    if args.mixture not in mixtures.MIXTURES:
        parser.error(f"unknown mixture {args.mixture!r}; known: {', '.join(mixtures.names())}")
    params = inspect.signature(mixtures.MIXTURES[args.mixture]).parameters
    kwargs = {}
    for item in args.arg:
        name, sep, value = item.partition("=")
        if not sep or name not in params:
            parser.error(f"--arg {item!r}: expected NAME=VALUE with NAME one of "
                         f"{', '.join(params)} ({args.mixture})")
        default = params[name].default
        kind = type(default) if default not in (inspect.Parameter.empty, None) else str
        try:
            kwargs[name] = kind(value)
        except ValueError:
            parser.error(f"--arg {item!r}: {name} takes a {kind.__name__}")
    if args.root is not None:
        if "root" not in params:
            parser.error(f"--root: mixture {args.mixture!r} reads no dataset folder")
        kwargs["root"] = args.root
    missing = [p for p in _required(args.mixture) if p not in kwargs]
    if missing:
        flags = ", ".join("--root DIR" if p == "root" else f"--arg {p}=VALUE" for p in missing)
        parser.error(f"mixture {args.mixture!r} needs {', '.join(missing)}: pass {flags}")
    if "root" in kwargs and not pathlib.Path(kwargs["root"]).exists():
        parser.error(f"--root {kwargs['root']}: no such folder")
    return kwargs


def main(argv: list[str] | None = None) -> pathlib.Path:
    listed = "; ".join(f"{n} (needs {', '.join(_required(n))})" if _required(n) else n
                       for n in mixtures.names())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixture", required=True, help=f"one of: {listed}")
    parser.add_argument("--out", required=True, help="output image (PNG)")
    parser.add_argument("--n", type=int, default=16, help="examples in the grid (spread over tasks)")
    parser.add_argument("--resolution", type=int, default=None, help="override the mixture resolution (px)")
    parser.add_argument("--seed", type=int, default=None, help="override the mixture seed")
    parser.add_argument("--root", default=None,
                        help="dataset folder of mixtures that read one (cityscapes_mix: a folder "
                             "with leftImg8bit/ and gtFine/, or the zips)")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                        help="another argument of the mixture's function (repeatable)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n {args.n}: must be >= 1")
    config = mixtures.get(args.mixture, **mixture_kwargs(parser, args))
    with config.unlocked():
        if args.resolution is not None:
            config.resolution = (args.resolution, args.resolution)
        if args.seed is not None:
            config.seed = args.seed
    mix = mixture_lib.Mixture(config)
    out = render_grid(pick_examples(mix, args.n), args.out)
    print(f"wrote {out} ({args.n} examples requested, tasks: {', '.join(mix.tasks)})")
    return out


if __name__ == "__main__":
    main()
