"""Codec throughput on one CPU core: encode and decode of depth, normals and semantic targets.

    python benchmarks/codecs.py                          # 2048x1024, synthetic street scene
    python benchmarks/codecs.py --repeats 9 --json codecs.json
    python benchmarks/codecs.py --colormaps              # also time the colormap table builds

Each codec decodes a realistic 2048x1024 image: a street-like scene (ground plane, boxes with
slanted fronts, far wall, sky) rendered as the target the generator must produce, plus
Gaussian "generation noise" (--noise, default 2 levels per channel; real Vision Banana outputs
drift a few levels off the path, and noise is also what makes their PNGs as large as they
are). The reference is `cv2.imdecode` of the same image saved as PNG (OpenCV defaults),
measured in the same run: ratio = imdecode time / decode time (>= 2 is the target). With
--real (default: the shared real_outputs folder when present) the same comparison runs on
the real Vision Banana depth and normals PNGs.

Times are CPU seconds of this single-threaded process (thread pools pinned to 1, OpenCV
`setNumThreads(1)`), best of --repeats: on a shared machine that is what one core delivers.
Table builds (the first decode of a process) are reported separately, cold.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core: pin thread pools before numpy starts them

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tasks import colormaps, depth, normals  # noqa: E402

REAL_OUTPUTS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "real_outputs"


def street_scene(h: int, w: int, rng: np.random.Generator):
    """Depth (m, +inf sky), unit normals (ours: x right, y up, z to camera) and class ids.

    Pinhole camera 1.6 m above a ground plane, focal length w; a far wall; 24 boxes standing
    on the ground with fronts turned by up to 60 deg, each its own class (1..18 cycled); sky
    above the wall. Depth is z-depth, normals are exact per surface.
    """
    f, cy = float(w), h * 0.45
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    ray = np.stack([(cols + 0.5 - w / 2) / f, (cy - rows - 0.5) / f, -np.ones_like(rows)], -1)  # z-depth 1
    d = np.full((h, w), np.inf)
    n = np.zeros((h, w, 3))
    n[..., 2] = 1.0
    cls = np.zeros((h, w), np.int32)
    # Ground y = -1.6: depth = 1.6 / -ray_y where the ray goes down.
    with np.errstate(divide="ignore"):
        ground = np.where(ray[..., 1] < 0, 1.6 / -ray[..., 1], np.inf)
    wall = np.where(ray[..., 1] < 12.0 / 120.0, 120.0, np.inf)            # a 12 m high wall at 120 m
    d, n, cls = _closer(d, n, cls, ground, (0.0, 1.0, 0.0), 0)
    d, n, cls = _closer(d, n, cls, wall, (0.0, 0.0, 1.0), 18)
    for i in range(24):
        z0 = np.exp(rng.uniform(np.log(2.0), np.log(60.0)))
        x0 = rng.uniform(-0.6, 0.6) * z0
        yaw = rng.uniform(-np.pi / 3, np.pi / 3)
        half_w, height = rng.uniform(0.4, 3.0), rng.uniform(0.8, 4.0)
        normal = np.array([np.sin(yaw), 0.0, np.cos(yaw)])                 # front face, to camera
        # Plane n.(p - c) = 0 with p = depth * ray, c = (x0, ., -z0).
        denom = ray @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (x0 * normal[0] - z0 * normal[2]) / denom
            p = t[..., None] * ray
            lateral = (p[..., 0] - x0) * np.cos(yaw) - (p[..., 2] + z0) * np.sin(yaw)
            inside = (t > 0) & (np.abs(lateral) < half_w) & (p[..., 1] > -1.6) & (p[..., 1] < -1.6 + height)
        d, n, cls = _closer(d, n, cls, np.where(inside, t, np.inf), tuple(normal), 1 + i % 17)
    return d.astype(np.float32), n.astype(np.float32), cls


def _closer(d, n, cls, cand, normal, label):
    near = cand < d
    return (np.where(near, cand, d), np.where(near[..., None], np.asarray(normal), n),
            np.where(near, label, cls))


def add_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return rgb
    return np.clip(rgb + rng.normal(0.0, sigma, rgb.shape), 0, 255).round().astype(np.uint8)


def best_cpu(fn, repeats: int) -> float:
    """Best CPU time of `repeats` calls (after one warm-up call)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def cold_cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def png_reference(rgb: np.ndarray, repeats: int) -> tuple[float, int]:
    """(best imdecode CPU seconds, PNG bytes) of `rgb` saved as PNG with OpenCV defaults."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return best_cpu(lambda: cv2.imdecode(png, cv2.IMREAD_COLOR), repeats), png.size


def semantic_module():
    """tasks.semantic when it exists (written in parallel with this benchmark), else None."""
    if importlib.util.find_spec("tasks.semantic") is None:
        return None
    from tasks import semantic
    return semantic


def build_times(colormap_tables: bool) -> dict:
    """Cold CPU seconds of every lookup table a first decode builds."""
    colormaps.nearest_table.cache_clear()
    depth.depth_table.cache_clear()
    depth.position_depths.cache_clear()
    out = {"depth rainbow nearest-point table": cold_cpu(lambda: colormaps.nearest_table("rainbow")),
           "depth rainbow float32 table": cold_cpu(lambda: depth.depth_table("rainbow"))}
    names = [n for n in colormaps.NAMES if n != "rainbow"] if colormap_tables else []
    for name in tqdm(names, desc="colormap tables", leave=False, disable=None):
        out[f"depth {name} nearest-point table"] = cold_cpu(lambda: colormaps.nearest_table(name))
    if colormap_tables:
        out["depth rainbow ycbcr nearest-point table"] = cold_cpu(lambda: colormaps.nearest_table("rainbow", "ycbcr"))
    return out


def measure(h: int, w: int, repeats: int, noise: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    d, n, cls = street_scene(h, w, rng)
    rows = []

    def row(name, encode, decode, rgb):
        t_dec = best_cpu(lambda: decode(rgb), repeats)
        t_png, size = png_reference(rgb, repeats)
        t_enc = best_cpu(encode, max(1, repeats // 2))
        mpx = h * w / 1e6
        rows.append({"codec": name, "encode_mpx_s": mpx / t_enc, "decode_mpx_s": mpx / t_dec,
                     "imdecode_mpx_s": mpx / t_png, "ratio": t_png / t_dec, "png_mb_per_mpx": size / 1e6 / mpx})

    d_rgb = add_noise(depth.encode(d), noise, rng)
    row("depth", lambda: depth.encode(d), depth.decode, d_rgb)
    n_rgb = add_noise(normals.encode(n), noise, rng)
    row("normals", lambda: normals.encode(n), normals.decode, n_rgb)
    semantic = semantic_module()
    if semantic is not None:
        colors = semantic.palette(19)
        labels = cls.astype(np.int64)
        s_rgb = add_noise(semantic.encode(labels, colors), noise, rng)
        row("semantic (19 classes)", lambda: semantic.encode(labels, colors),
            lambda x: semantic.decode(x, colors), s_rgb)
    return rows


def measure_real(root: pathlib.Path, repeats: int) -> list[dict]:
    """decode vs imdecode on the real Vision Banana depth and normals PNGs (no JPEGs)."""
    entries = json.loads((root / "manifest.json").read_text())
    rows = []
    for task, decode in (("depth", depth.decode), ("normals", normals.decode)):
        t_dec = t_png = mpx = size = 0.0
        for e in entries:
            if e["task"] != task or not e["output"].endswith(".png"):
                continue
            png = np.fromfile(root / e["output"], np.uint8)
            rgb = np.ascontiguousarray(cv2.imdecode(png, cv2.IMREAD_COLOR)[..., ::-1])
            t_png += best_cpu(lambda: cv2.imdecode(png, cv2.IMREAD_COLOR), repeats)
            t_dec += best_cpu(lambda: decode(rgb), repeats)
            mpx += rgb.shape[0] * rgb.shape[1] / 1e6
            size += png.size
        if mpx:
            rows.append({"codec": f"{task} (real outputs, {mpx:.1f} Mpx)", "decode_mpx_s": mpx / t_dec,
                         "imdecode_mpx_s": mpx / t_png, "ratio": t_png / t_dec, "png_mb_per_mpx": size / 1e6 / mpx})
    return rows


def print_table(rows: list[dict], builds: dict) -> None:
    print(f"{'codec':34s} {'encode Mpx/s':>12s} {'decode Mpx/s':>12s} {'imdecode Mpx/s':>14s} "
          f"{'decode vs imdecode':>18s} {'PNG MB/Mpx':>10s}")
    for r in rows:
        enc = f"{r['encode_mpx_s']:12.1f}" if "encode_mpx_s" in r else f"{'-':>12s}"
        print(f"{r['codec']:34s} {enc} {r['decode_mpx_s']:12.1f} {r['imdecode_mpx_s']:14.1f} "
              f"{r['ratio']:17.1f}x {r['png_mb_per_mpx']:10.2f}")
    print("\ntable builds (cold, CPU s):")
    for name, sec in builds.items():
        print(f"  {name:44s} {sec:6.2f}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--noise", type=float, default=2.0, help="generation noise, levels per channel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--colormaps", action="store_true", help="also time the colormap table builds")
    parser.add_argument("--real", type=pathlib.Path, default=REAL_OUTPUTS,
                        help="folder of real Vision Banana outputs (manifest.json); skipped when absent")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    builds = build_times(args.colormaps)
    rows = measure(args.height, args.width, args.repeats, args.noise, args.seed)
    if (args.real / "manifest.json").is_file():
        rows += measure_real(args.real, args.repeats)
    print_table(rows, builds)
    result = {"rows": rows, "table_builds_cpu_s": builds, "size": [args.height, args.width],
              "noise": args.noise, "repeats": args.repeats}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
