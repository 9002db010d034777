"""Loader throughput: examples/s per grain worker, against raw reads measured in the same run.

    python benchmarks/loader.py [--resolution 512] [--batches 12] [--workers 1 2] [--json out.json]

Two sources, each through the full path (read, random crop + flip, fit to the resolution,
encode the target, render the prompt, collate, ship across processes, tokenize):

- synthetic: the procedural scene source (depth targets); reference = rendering records
  directly in this process (`source[i]`), i.e. the cost of the records alone;
- cityscapes: a fixture written in the real Cityscapes layout (2048x1024 leftImg8bit PNGs,
  gtFine labelIds and instanceIds PNGs) read by `CityscapesSource(with_instances=False)`
  (semantic targets); reference = raw `cv2.imread` of the same two files per record.

Per-worker rate = examples/s / workers; ratio = per-worker rate / reference records/s (1.0: a
worker runs as fast as raw reading alone). Worker start-up is excluded (two warm-up batches
per worker). On a shared machine, compare rows of one run only.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import sys
import tempfile
import time

import absl.flags

absl.flags.FLAGS.mark_as_parsed()  # grain workers read absl flags

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tqdm  # noqa: E402

from data_mix import mixture as mx  # noqa: E402
from data_mix.iterator import make_iterator  # noqa: E402
from data_mix.sources import cityscapes  # noqa: E402

TASKS = ["generation", "depth", "normals", "semantic", "instance", "referring", "binary", "restoration"]


def write_cityscapes_fixture(root: pathlib.Path, n: int = 8, split: str = "train", city: str = "bench",
                             size: tuple[int, int] = (1024, 2048), seed: int = 0) -> list[pathlib.Path]:
    """n frames in the official layout: a street-like layout (sky, buildings, road, sidewalk, cars)
    with textured colors so PNG sizes and decode costs resemble the real files."""
    rng = np.random.default_rng(seed)
    ids = {lab.name: lab.id for lab in cityscapes.LABELS}
    color = {lab.id: lab.color for lab in cityscapes.LABELS}
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    paths = []
    for k in range(n):
        label = np.full((h, w), ids["sky"], np.uint8)
        horizon = int(h * rng.uniform(0.35, 0.5))
        for _ in range(12):  # buildings
            x0 = int(rng.integers(0, w)); bw = int(rng.integers(80, 400)); top = int(rng.integers(30, horizon))  # noqa: E702
            label[top:horizon + 40, x0:x0 + bw] = ids[str(rng.choice(["building", "wall", "vegetation"]))]
        label[horizon + 40:] = ids["road"]
        label[(yy > horizon + 40) & ((xx < (yy - horizon) * 0.5) | (xx > w - (yy - horizon) * 0.5))] = ids["sidewalk"]
        instance = label.astype(np.uint16)
        for j in range(int(rng.integers(3, 9))):  # cars, each an instance
            cy = int(rng.integers(horizon + 60, h - 60)); cx = int(rng.integers(0, w - 200))  # noqa: E702
            ch, cw = int(rng.integers(40, 120)), int(rng.integers(80, 260))
            label[cy:cy + ch, cx:cx + cw] = ids["car"]
            instance[cy:cy + ch, cx:cx + cw] = ids["car"] * 1000 + j
        lut = np.zeros((256, 3), np.float32)
        for i, c in color.items():
            if i >= 0:
                lut[i] = c
        shade = (0.75 + 0.25 * np.sin(xx / 37.0 + k) * np.cos(yy / 23.0))[..., None]
        image = lut[label] * shade + rng.normal(0, 6, (h, w, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        stem = f"{city}_{k:06d}_000019"
        img_dir = root / "leftImg8bit" / split / city
        gt_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_dir / f"{stem}_leftImg8bit.png"), image[..., ::-1])
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelIds.png"), label)
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_instanceIds.png"), instance)
        paths.append(img_dir / f"{stem}_leftImg8bit.png")
    return paths


def raw_imread_rate(image_paths: list[pathlib.Path], rounds: int = 2) -> float:
    """Records/s of cv2.imread on each record's image and labelIds PNGs (what a semantic
    record needs)."""
    files = []
    for p in image_paths:
        gt = str(p).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "")
        files.append((str(p), gt + "_gtFine_labelIds.png"))
    t = time.perf_counter()
    for _ in range(rounds):
        for img, lab in files:
            cv2.imread(img, cv2.IMREAD_COLOR)
            cv2.imread(lab, cv2.IMREAD_UNCHANGED)
    return rounds * len(files) / (time.perf_counter() - t)


def direct_record_rate(source, n: int) -> float:
    """Records/s of `source[i]` in this process."""
    t = time.perf_counter()
    for i in range(n):
        source[i]
    return n / (time.perf_counter() - t)


def tokenize(prompts: list[str]) -> np.ndarray:
    out = np.zeros((len(prompts), 128), np.int32)
    for i, p in enumerate(prompts):
        b = np.frombuffer(p.encode()[:128], np.uint8)
        out[i, :len(b)] = b
    return out


def loader_rate(config, workers: int, batches: int, batch_size: int) -> float:
    """Examples/s of make_iterator with `workers` grain processes, after warm-up."""
    m = mx.Mixture(config)
    it = make_iterator(m, global_batch_size=batch_size, process_index=0, process_count=1,
                       tokenize=tokenize, task_names=TASKS, num_workers=workers, prefetch_batches=2)
    for _ in range(2 * max(workers, 1)):  # every worker started (spawn + imports) and warm
        next(it)
    t = time.perf_counter()
    for _ in tqdm.trange(batches, desc=f"{m.names[0]}, {workers} worker(s)", leave=False):
        next(it)
    rate = batches * batch_size / (time.perf_counter() - t)
    it.close()
    del it
    gc.collect()  # frees the shared-memory batches now, not at interpreter exit
    time.sleep(0.5)
    return rate


def bench_cityscapes(args, res) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_cityscapes_fixture(pathlib.Path(tmp), n=args.fixture_files)
        ref = raw_imread_rate(paths)
        config = mx.default_config()
        config.resolution = res
        config.sources.cityscapes = mx.source_config(
            "data_mix.sources.cityscapes:CityscapesSource", "semantic", 1.0,
            kwargs=dict(root=tmp, split="train", with_instances=False), crop_scale=(0.3, 1.0), flip_prob=0.5)
        for w in args.workers:
            rate = loader_rate(config, w, args.batches, args.batch_size)
            rows.append(dict(source="cityscapes", workers=w, examples_per_s=rate, per_worker=rate / w,
                             reference=ref, reference_what="cv2.imread image+labelIds"))
    return rows


def bench_synthetic(args, res) -> list[dict]:
    rows = []
    syn_cls = mx._import(args.synthetic, "synthetic")
    syn_kwargs = dict(seed=0, size=args.resolution, num_records=10_000, split="train")
    ref = direct_record_rate(syn_cls(**syn_kwargs), 2 * args.batch_size)
    config = mx.default_config()
    config.resolution = res
    config.sources.synthetic = mx.source_config(args.synthetic, "depth", 1.0, kwargs=syn_kwargs, flip_prob=0.5)
    for w in args.workers:
        rate = loader_rate(config, w, args.batches, args.batch_size)
        rows.append(dict(source="synthetic", workers=w, examples_per_s=rate, per_worker=rate / w,
                         reference=ref, reference_what="source[i] in-process"))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fixture-files", type=int, default=8)
    parser.add_argument("--synthetic", default="data_mix.synthetic:SyntheticScenes",
                        help="import path of the synthetic scene source")
    parser.add_argument("--sources", nargs="+", default=["synthetic", "cityscapes"],
                        choices=["synthetic", "cityscapes"])
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    res = (args.resolution, args.resolution)
    results: dict = {"resolution": args.resolution, "batch_size": args.batch_size, "rows": []}

    if "cityscapes" in args.sources:
        results["rows"] += bench_cityscapes(args, res)
    if "synthetic" in args.sources:
        results["rows"] += bench_synthetic(args, res)
    print(f"loader throughput at {args.resolution} px, batch {args.batch_size}, {args.batches} timed batches")
    print(f"{'source':<11} {'workers':>7} {'examples/s':>11} {'per worker':>11} {'reference/s':>12} {'ratio':>6}  reference")  # noqa: E501
    for r in results["rows"]:
        print(f"{r['source']:<11} {r['workers']:>7} {r['examples_per_s']:>11.2f} {r['per_worker']:>11.2f} "
              f"{r['reference']:>12.2f} {r['per_worker'] / r['reference']:>6.2f}  {r['reference_what']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return results



if __name__ == "__main__":
    main(sys.argv[1:])
