"""Throughput of the synthetic-scene sources on one CPU core.

    python benchmarks/synthetic.py                      # 64, 256, 512 px; antialias 1 and 2
    python benchmarks/synthetic.py --sizes 64 --scenes 400 --json out.json
    python benchmarks/synthetic.py --check 100          # geometry and edit-pair checks only

For each size it times complete records (scene sampling, rendering, labels, caption, meta)
of `SyntheticScenes`, and, for comparison across machines, two references measured in the
same run on the same records: copying every output array (`np.copy`, memory bandwidth) and
PNG-encoding the image (`cv2.imencode`, a typical per-image CPU cost in loaders). Times are
CPU seconds of this (single-threaded) process, best of --repeats passes: on a shared machine
that is what one core delivers, least disturbed by other processes. Targets:
>= 200 scenes/s at 64 px, >= 10 scenes/s at 256 px.

--check N renders N scenes and reports the acceptance figures of the source: the angle
between normals from the depth map's gradients and the analytic normals (median over smooth
interior pixels), and, for every object of every scene, the pixels a recolor changes outside
the object's footprint, and a removal outside the (1-pixel dilated) footprint and shadow
(footprints include anti-aliasing sub-samples; expected: none).
"""

from __future__ import annotations

import argparse
import json
import os

# One core: pin the thread pools before numpy / OpenCV start them.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data_mix.synthetic import (  # noqa: E402
    SyntheticEdits,
    SyntheticScenes,
    SyntheticTextToImage,
    checks,
    edits,
    palette,
    raycast,
    render,
)

_ARRAY_KEYS = ("image", "depth", "normals", "semantic", "instance_masks")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def measure(size: int, scenes: int, repeats: int, antialias: int, source: str = "scenes") -> dict:
    """Seconds per record of one source at size x size, and the two reference costs."""
    cls = {"scenes": SyntheticScenes, "t2i": SyntheticTextToImage, "edits": SyntheticEdits}[source]
    src = cls(seed=0, size=(size, size), num_records=scenes, antialias=antialias)
    src[0]  # warm caches (palette tables, imports)
    t_rec = _best(lambda: [src[i] for i in range(scenes)], repeats) / scenes
    recs = [SyntheticScenes(seed=0, size=(size, size), num_records=scenes)[i]
            for i in range(min(scenes, 20))]
    t_copy = _best(lambda: [np.copy(r[k]) for r in recs for k in _ARRAY_KEYS], repeats) / len(recs)
    t_png = _best(lambda: [cv2.imencode(".png", r["image"]) for r in recs], repeats) / len(recs)
    return {"source": source, "size": size, "antialias": antialias,
            "ms_per_record": 1e3 * t_rec, "records_per_s": 1.0 / t_rec,
            "copy_ms": 1e3 * t_copy, "png_ms": 1e3 * t_png,
            "x_copy": t_rec / t_copy, "x_png": t_rec / t_png}


def check(n: int, size: int = 256, edit_size: int = 96) -> dict:
    """Acceptance figures over n scenes of the train split (see the module docstring)."""
    src = SyntheticScenes(seed=0, size=(size, size), num_records=n)
    parts = {"objects": [], "room": [], "all": []}
    outside = {"recolor": 0, "remove": 0}
    edits_done = {"recolor": 0, "remove": 0}
    revealed_nearer = 0
    for i in tqdm(range(n), desc="checks"):
        scene = src.scene(i)
        view = render.render(scene, src.size, antialias=1, noise=False)
        est = checks.normals_from_depth(view.depth, scene.camera.intrinsics(src.size))
        ok = checks.smooth_interior(view)
        ang = checks.angle_deg(est, view.normals)
        obj = view.surface >= raycast.OBJECT0
        parts["objects"].append(ang[ok & obj])
        parts["room"].append(ang[ok & ~obj])
        parts["all"].append(ang[ok])
        esize = (edit_size, edit_size)
        before = render.render(scene, esize, antialias=2, shadow_samples=4)
        for k, prim in enumerate(scene.objects):
            mask = before.surface == raycast.OBJECT0 + k
            new = "blue" if prim.color != "blue" else "red"
            recolored = edits.replace_object(scene, k, color=new, rgb=palette.OBJECT_COLORS[new])
            after = render.render(recolored, esize, antialias=2, shadow_samples=4)
            hit, shadow = checks.footprints(scene, esize, k, 4, 2)
            changed = (before.image != after.image).any(-1)
            outside["recolor"] += int((changed & ~hit).sum())
            removed = render.render(edits.drop_object(scene, k), esize, antialias=2,
                                    shadow_samples=4)
            changed = (before.image != removed.image).any(-1)
            outside["remove"] += int((changed & ~checks.dilate(hit | shadow)).sum())
            revealed_nearer += int((removed.depth[mask] <= before.depth[mask]).sum())
            edits_done["recolor"] += 1
            edits_done["remove"] += 1
    out = {"scenes": n, "size": size}
    for name, vals in parts.items():
        a = np.concatenate(vals)
        out[f"normals_{name}_pixels"] = int(a.size)
        out[f"normals_{name}_median_deg"] = float(np.median(a))
        out[f"normals_{name}_mean_deg"] = float(a.mean())
        out[f"normals_{name}_p95_deg"] = float(np.percentile(a, 95))
    for kind in outside:
        out[f"{kind}_edits"] = edits_done[kind]
        out[f"{kind}_pixels_changed_outside"] = outside[kind]
    out["removal_revealed_pixels_not_farther"] = revealed_nearer
    for key, value in out.items():
        print(f"{key:40s} {value:.4g}" if isinstance(value, float) else f"{key:40s} {value}")
    return out


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--antialias", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--sources", nargs="+", default=["scenes"],
                        choices=["scenes", "t2i", "edits"])
    parser.add_argument("--scenes", type=int, default=0,
                        help="records per pass (default: 200 at 64 px, fewer when larger)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="instead of timing, run the acceptance checks on N scenes")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.check:
        result = check(args.check)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return [result]
    rows = []
    print(f"{'source':7s} {'size':>5s} {'aa':>3s} {'ms/rec':>8s} {'rec/s':>8s} "
          f"{'copy ms':>8s} {'png ms':>7s} {'x copy':>8s} {'x png':>6s}")
    for source in args.sources:
        for size in args.sizes:
            n = args.scenes or max(10, int(200 * (64 / size) ** 2))
            for aa in args.antialias:
                r = measure(size, n, args.repeats, aa, source)
                rows.append(r)
                print(f"{source:7s} {size:5d} {aa:3d} {r['ms_per_record']:8.2f} "
                      f"{r['records_per_s']:8.1f} {r['copy_ms']:8.3f} {r['png_ms']:7.3f} "
                      f"{r['x_copy']:8.0f} {r['x_png']:6.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
