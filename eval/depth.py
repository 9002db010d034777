"""Metric monocular depth: NYUv2, KITTI, DIODE, ETH3D, iBims-1, ScanNet (Marigold protocol).

    python -m eval.depth --dataset nyuv2 --nyuv2-mat nyu_depth_v2_labeled.mat --predictions DIR \\
        --baseline marigold=DIR2 --alignment marigold=least_squares --out OUT

Scores per image and averages over images (`eval.metrics.DepthEvaluator` with the dataset's
preset: valid range, Eigen / Garg crop, DIODE's mask, prediction caps). Metric models are
scored without alignment; affine-invariant baselines take `--alignment NAME=least_squares`
(or least_squares_disparity for disparity outputs, median for scale only). Writes
OUT/results.json, OUT/report.md (beside the paper's delta1 / AbsRel rows for the dataset),
OUT/chart_metrics.png and OUT/worst_<model>.png (highest AbsRel: input / prediction / ground
truth in the rainbow depth colors / AbsRel error).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from eval import cli, report
from eval import predictions as preds
from eval.metrics.depth import METRICS, DepthEvaluator, align
from eval.metrics.depth_presets import KITTI_BENCHMARK_HW, kitti_benchmark_crop
from eval.references import references_for
from tasks import depth as depth_codec

DATASETS = ("nyuv2", "kitti", "diode", "eth3d", "ibims1", "scannet")
ALIGNMENTS = ("none", "least_squares", "least_squares_disparity", "median")
EPILOG = """\
predictions folder (--predictions / --baseline): one file per image named by the record id,
  DIR/<id>.npy (float32 (H, W) metres; +inf allowed for sky) or DIR/<id>.png (single-channel
  8/16-bit, metres * --png-scale, e.g. 256 for KITTI-style files, 1000 for millimetres). Ids:
    nyuv2    0001 .. 1449 (4-digit 1-based index in the labeled .mat; test split: 654 ids)
    kitti    <drive>/image_02/<frame>, e.g. 2011_09_26_drive_0002_sync/image_02/0000000069
    diode    the image file stem, e.g. 00019_00183_indoors_000_010
    eth3d    <scene>/<image stem>, e.g. courtyard/DSC_0286
    ibims1   the image name, e.g. corridor_01
    scannet  <scene>/<frame>, e.g. scene0707_00/000000
  Predictions match the input image size (KITTI: the full frame, or the 352x1216 benchmark
  crop) or are smaller with the same aspect (bilinear upsampling, sky carried by nearest).
  A missing or misnamed file is an error naming the expected path.
  Per-model settings: --alignment NAME=least_squares, --png-scale NAME=256.
checkpoint (--workdir): "generate a metric depth map" prompts (rainbow colormap), decoded by
  tasks.depth and written as OUT/predictions/NAME/<id>.npy.
"""


def make_source(parser, args):
    """The dataset reader chosen by --dataset (its path options are checked here)."""
    from data_mix import sources

    def need(*names):
        missing = [n for n in names if getattr(args, n) is None]
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            parser.error(f"--dataset {args.dataset} needs {flags}")

    if args.dataset == "nyuv2":
        need("nyuv2_mat")
        return sources.NYUv2Source.for_depth_benchmark(args.nyuv2_mat, depth=args.nyu_depth,
                                                       splits_mat=args.nyuv2_splits)
    if args.dataset == "kitti":
        need("kitti_raw", "kitti_depth", "kitti_split")
        return sources.KITTIDepthSource(args.kitti_raw, args.kitti_depth, args.kitti_split)
    if args.dataset == "diode":
        need("diode_root")
        return sources.DIODESource(args.diode_root, "val", domain=args.diode_domain)
    if args.dataset == "eth3d":
        need("eth3d_root")
        return sources.ETH3DSource(args.eth3d_root, file_list=args.eth3d_list)
    if args.dataset == "ibims1":
        need("ibims_root")
        return sources.IBimsSource(args.ibims_root)
    need("scannet_root")
    return sources.ScanNetSource(args.scannet_root, file_list=args.scannet_list)


def preset_name(args) -> str:
    return f"kitti_{args.kitti_crop}" if args.dataset == "kitti" else args.dataset


def ground_truth(args, record) -> tuple[np.ndarray, np.ndarray | None]:
    """(depth float32 (H, W) metres on the scored frame, dataset validity mask or None)."""
    depth = record["depth"]
    if args.dataset == "kitti":
        return kitti_benchmark_crop(depth), None
    if args.dataset == "diode":  # the reader set NaN outside *_depth_mask.npy
        return depth, np.isfinite(depth)
    return depth, None


def prediction_on_frame(args, pred: np.ndarray, image_hw: tuple[int, int], name: str) -> np.ndarray:
    """A prediction brought to the scored frame (KITTI: the benchmark crop of the full frame)."""
    if args.dataset == "kitti":
        if pred.shape == KITTI_BENCHMARK_HW:
            return pred
        return kitti_benchmark_crop(preds.to_size(pred, image_hw, "depth", name))
    return preds.to_size(pred, image_hw, "depth", name)


def predict_folder(args, source, indices, folder: pathlib.Path) -> dict:
    """Our checkpoint's depth predictions as <id>.npy under `folder`."""
    from eval import from_checkpoint

    def jobs():
        for i in indices:
            record = source[i]
            prompt = depth_codec.render_prompt(np.random.default_rng(args.seed + i), "rainbow")
            yield from_checkpoint.Job(record["meta"]["id"], record["image"], prompt, {"colormap": "rainbow"})

    return from_checkpoint.predict_into(
        args, jobs(), "depth", lambda job, depth: preds.write_npy(folder / f"{job.key}.npy", depth),
        total=len(indices))


def _worst_grid(args, out, name, source, folder, evaluator, per_image, k):
    worst = sorted(per_image, key=lambda r: (-r["abs_rel"], r["name"]))[:k]
    preset = evaluator.preset
    rows, titles = [], []
    for r in worst:
        record = source[r["index"]]
        gt, mask = ground_truth(args, record)
        path = folder.path(r["name"])
        pred = prediction_on_frame(args, preds.read_depth(path, cli.per_model(args, "png_scale", name)),
                                   record["image"].shape[:2], str(path))
        valid = evaluator.valid_mask(gt, mask)
        aligned, _ = align(pred, gt, valid, evaluator.alignment)
        shown = np.clip(aligned, *preset.pred_range)
        image = kitti_benchmark_crop(record["image"]) if args.dataset == "kitti" else record["image"]
        err = np.where(valid, np.abs(shown - gt) / np.where(valid, gt, 1), np.nan)
        panels = [image, depth_codec.encode(shown.astype(np.float32)), depth_codec.encode(gt),
                  report.heatmap(err, 0.5)]
        rows.append([report.thumbnail(p) for p in panels])
        titles.append(f"{r['name']}\nAbsRel {report.fmt(r['abs_rel'])}")
    return report.image_grid(out / f"worst_{name}.png", rows,
                             col_titles=["input", name, "ground truth", "AbsRel (0..0.5)"],
                             row_titles=titles, title=f"{args.dataset}: highest AbsRel ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = cli.make_parser("eval.depth", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
    d.add_argument("--dataset", required=True, choices=DATASETS)
    d.add_argument("--nyuv2-mat", type=pathlib.Path, help="nyu_depth_v2_labeled.mat")
    d.add_argument("--nyuv2-splits", type=pathlib.Path,
                   help="official splits.mat (default: the embedded test list)")
    d.add_argument("--nyu-depth", choices=("raw", "inpainted"), default="raw",
                   help="NYUv2 ground truth: raw = rawDepths, 0 = invalid (default, as Marigold / BTS); "
                        "inpainted = the colorization-filled depths")
    d.add_argument("--kitti-raw", type=pathlib.Path, help="KITTI raw data root ({date}/...)")
    d.add_argument("--kitti-depth", type=pathlib.Path, help="data_depth_annotated folder")
    d.add_argument("--kitti-split", type=pathlib.Path, help="Eigen test split file")
    d.add_argument("--kitti-crop", choices=("eigen", "garg"), default="eigen",
                   help="evaluation mask on the 352x1216 benchmark crop (default eigen, as Marigold)")
    d.add_argument("--diode-root", type=pathlib.Path, help="DIODE folder holding val/")
    d.add_argument("--diode-domain", choices=("indoors", "outdoor", "all"), default="indoors")
    d.add_argument("--eth3d-root", type=pathlib.Path)
    d.add_argument("--eth3d-list", type=pathlib.Path, help="optional 'rgb depth' pairs file")
    d.add_argument("--ibims-root", type=pathlib.Path, help="ibims1_core_mat folder")
    d.add_argument("--scannet-root", type=pathlib.Path)
    d.add_argument("--scannet-list", type=pathlib.Path, help="optional 'color depth' pairs file")
    d.add_argument("--alignment", action=cli.PerModel, choices=ALIGNMENTS, default="none",
                   metavar="[NAME=]METHOD",
                   help=f"per-image alignment: {', '.join(ALIGNMENTS)} (default none)")
    d.add_argument("--png-scale", action=cli.PerModel, type=float, default=None, metavar="[NAME=]SCALE",
                   help="stored PNG value per metre")
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args, ("alignment", "png_scale"))
    source = make_source(parser, args)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, folders, evaluators = {}, {}, {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        folder = cli.prediction_path(args, model, entries[model.name],
                                  lambda folder: predict_folder(args, source, indices, folder))
        folders[model.name] = preds.PredictionFolder(folder, (".npy", ".png"), f"model {model.name!r}")
        alignment = cli.per_model(args, "alignment", model.name)
        evaluators[model.name] = DepthEvaluator(preset_name(args), alignment)
    per_index = {name: {} for name in folders}
    for i in cli.progress(indices, args, desc=f"score {args.dataset}", unit="img"):
        record = source[i]
        key = record["meta"]["id"]
        gt, mask = ground_truth(args, record)
        for name, folder in folders.items():
            path = folder.path(key)
            pred = preds.read_depth(path, cli.per_model(args, "png_scale", name))
            pred = prediction_on_frame(args, pred, record["image"].shape[:2], str(path))
            if evaluators[name].add(pred, gt, mask, name=key) is not None:
                per_index[name][key] = i
    figures = {}
    for name, entry in entries.items():
        ev = evaluators[name]
        result = ev.result()
        for r in result["per_image"]:
            r["index"] = per_index[name][r["name"]]
        entry.update(predictions=str(folders[name].root), alignment=ev.alignment,
                     png_scale=cli.per_model(args, "png_scale", name), result=result,
                     unused_files=folders[name].unused())
        if args.worst > 0 and result["per_image"]:
            figures[f"Worst images: {name}"] = _worst_grid(args, out, name, source, folders[name], ev,
                                                           result["per_image"], args.worst)
    domain_ok = args.dataset != "diode" or args.diode_domain == "indoors"
    refs = references_for(f"depth/{args.dataset}") if domain_ok else []
    chart_models = {n: [e["result"]["metrics"]["delta1"], e["result"]["metrics"]["abs_rel"]]
                    for n, e in entries.items()}
    for r in refs:
        chart_models[f"{r.model} (paper)"] = [r.metrics.get("delta1"), r.metrics.get("abs_rel")]
    chart = report.bar_chart(out / "chart_metrics.png", ["delta1", "AbsRel"], chart_models, ylabel="value",
                             title=f"{args.dataset} depth")
    figures = {"delta1 and AbsRel": chart, **figures}
    preset = next(iter(evaluators.values())).preset
    limit = f"; first {len(indices)} of {len(source)} (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark=f"depth/{args.dataset}", title=f"Metric depth: {args.dataset}", models=entries,
        references=refs,
        columns=[report.Column("metrics.delta1", "delta1"), report.Column("metrics.abs_rel", "AbsRel", 4),
                 report.Column("metrics.delta2", "delta2"), report.Column("metrics.delta3", "delta3"),
                 report.Column("metrics.rmse", "RMSE (m)"), report.Column("metrics.silog", "SILog", 2),
                 report.Column("num_images", "images", 0)],
        intro=[f"Dataset: {args.dataset} ({len(indices)} images{limit})" +
               (f", domain {args.diode_domain}" if args.dataset == "diode" else ""),
               f"Protocol: per-image metrics averaged over images (Marigold); preset {preset.name}: "
               f"{preset.min_depth:g} < d < {preset.max_depth:g} m, crop {preset.crop}, predictions "
               f"clipped to {preset.pred_range[0]:g}..{preset.pred_range[1]:g} m ({preset.source})",
               "Alignment: " + ", ".join(f"{n}: {e['alignment']}" for n, e in entries.items()),
               *source.notes],
        figures=figures,
        extra={"dataset": {"name": args.dataset, "num_images": len(indices), "num_available": len(source),
                           "notes": list(source.notes),
                           **({"nyu_depth": args.nyu_depth} if args.dataset == "nyuv2" else {})},
               "metrics": list(METRICS), "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
