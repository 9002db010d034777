"""Cityscapes evaluation speed: cityscapesScripts vs eval.metrics on the same files.

Writes N synthetic 2048x1024 Cityscapes frames (labelIds + instanceIds + a prediction each,
eval/metrics/cityscapes_synthetic.py), then, in the same run:

1. cityscapesScripts' `evaluateImgLists` (with and without the instance score iIoU),
2. our `evaluate_files` on the same files (read and decoded included) with 1 thread and with
   all cores,
3. the per-image split of ours between PNG decoding and counting (1 thread), and decoding
   alone with 1 vs all threads (OpenCV releases the GIL, so decoding scales with cores),

and prints seconds per image, the speed-up, and checks that both give the same mIoU.
Each timing is the best of `--repeats` runs (the machine may be shared).

    python benchmarks/eval_speed.py --num-images 12
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import functools
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from eval.metrics import cityscapes_synthetic as synth
from eval.metrics.cityscapes_files import evaluate_files, instance_path_for, read_label_png


def _official_module(root: pathlib.Path):
    # cityscapesScripts reads these at import, and needs np.in1d, removed in numpy 2.4.
    os.environ["CITYSCAPES_DATASET"] = str(root)
    os.environ["CITYSCAPES_RESULTS"] = str(root / "results")
    if not hasattr(np, "in1d"):
        np.in1d = lambda a, b, invert=False: np.isin(np.ravel(a), b, invert=invert)
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as module

    return module


def _decode_all(paths, threads: int) -> list[np.ndarray]:
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(read_label_png, paths))


def _best(fn, repeats: int):
    """(wall s, CPU s, output) of the fastest of `repeats` runs; CPU = this process, all threads."""
    best = (float("inf"), float("inf"), None)
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        run = (time.perf_counter() - w0, time.process_time() - c0, out)
        best = min(best, run, key=lambda r: r[0])
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=12)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="where to write the tree (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or pathlib.Path(tmp)) / "cityscapes_speed"
        files = synth.write_tree(root, args.num_images, args.height, args.width, seed=args.seed)
        preds = [str(f[0]) for f in files]
        gts = [str(f[1]) for f in files]
        n = len(files)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        module = _official_module(root)
        print(f"{n} frames of {args.width}x{args.height}, {cores} cores, best of {args.repeats} runs, "
              f"load average {os.getloadavg()[0]:.2f} (other processes share the cores)\n")
        print(f"{'s/image':34s}{'official':>10s}{'ours 1 thr':>12s}{f'ours {cores} thr':>12s}{'speed-up':>10s}")
        for instances in (True, False):
            official_args = copy.copy(module.args)
            official_args.JSONOutput, official_args.quiet = False, True
            official_args.evalInstLevelScore, official_args.evalPixelAccuracy = instances, False
            off_wall, off_cpu, theirs = _best(
                lambda a=official_args: module.evaluateImgLists(preds, gts, copy.copy(a)), args.repeats)
            ours_args = {"instance_scores": instances, "progress": False}
            one_wall, one_cpu, ours_one = _best(
                functools.partial(evaluate_files, preds, gts, num_threads=1, **ours_args), args.repeats)
            all_wall, all_cpu, ours = _best(
                functools.partial(evaluate_files, preds, gts, num_threads=cores, **ours_args), args.repeats)
            if abs(theirs["averageScoreClasses"] - ours["miou"]) > 1e-9:
                print(f"MISMATCH: official mIoU {theirs['averageScoreClasses']}, ours {ours['miou']}")
                return 1
            label = "IoU + iIoU (3 PNGs/frame)" if instances else "IoU only (2 PNGs/frame)"
            print(f"{label + ', wall':34s}{off_wall / n:10.4f}{one_wall / n:12.4f}{all_wall / n:12.4f}"
                  f"{off_wall / all_wall:9.2f}x")
            print(f"{'  CPU time (all threads)':34s}{off_cpu / n:10.4f}{one_cpu / n:12.4f}{all_cpu / n:12.4f}"
                  f"{off_cpu / one_cpu:9.2f}x (1 thr)")
            split = ours_one["timing_s"]
            print(f"{'  ours 1 thr: decode | count':34s}{'':10s}{split['decode'] / n:12.4f}"
                  f"{split['count'] / n:12.4f}")

        # Decoding alone: the part that threads parallelize.
        paths = [p for f in files for p in (f[0], f[1], instance_path_for(f[1]))]
        print()
        for threads in sorted({1, cores}):
            wall, cpu, _ = _best(functools.partial(_decode_all, paths, threads), args.repeats)
            print(f"decode 3 PNGs/frame, {threads} thread(s): {wall / n:.4f} s/image wall, {cpu / n:.4f} CPU")
        print(f"\nscores equal to the official (mIoU {ours['miou']:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
