"""Surface normals: NYUv2, DIODE, ScanNet, iBims-1, Virtual KITTI 2 (angular errors, DSINE / Marigold).

    python -m eval.normals --dataset scannet --dsine-root dsine_eval/scannet --predictions DIR \\
        --baseline dsine=DIR2 --convention dsine=dsine --out OUT

Ground truth comes from DSINE's evaluation layout (`--dsine-root`, any of the datasets) or the
dataset readers: NYUv2 (.mat + a normals folder), DIODE (*_normal.npy), Virtual KITTI 2 (a
normals tree). Angular errors (`eval.metrics.NormalsEvaluator`) are reported both pooled over
all valid pixels (DSINE) and as per-image means (Marigold). Writes OUT/results.json,
OUT/report.md (beside the paper's mean / median rows), OUT/chart_errors.png,
OUT/chart_thresholds.png and OUT/worst_<model>.png (highest mean error: input / prediction /
ground truth in the Vision Banana normal colors / angular error).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from eval import cli, report
from eval import predictions as preds
from eval.metrics.normals import NormalsEvaluator, angular_error_deg
from eval.references import references_for
from tasks import normals as normals_codec

DATASETS = ("nyuv2", "diode", "scannet", "ibims1", "vkitti2", "sintel")
EPILOG = """\
predictions folder (--predictions / --baseline): one file per image named by the record id,
  DIR/<id>.npy (float (H, W, 3) or (3, H, W) vectors) or DIR/<id>.png (8/16-bit RGB normal
  map), in the axes of --convention:
    vision_banana  x right, y up, z toward the camera (PNG: R = (1-x)/2, G = (1+y)/2, B = (1+z)/2)
    opencv         x right, y down, z forward (PNG: (v + 1) / 2)
    dsine          x left, y up, z toward the camera (DSINE's outputs; PNG: (v + 1) / 2)
    omnidata       as dsine (Omnidata's outputs; its PNGs equal ours)
  All-zero PNG pixels and zero vectors count as predictions 90 degrees off. Ids:
    DSINE layout   <scene>/<id> of <scene>/<id>_img.png, e.g. scene0001_00/000000
    nyuv2          0001 .. 1449 (4-digit 1-based index in the labeled .mat)
    diode          the image file stem, e.g. 00019_00183_indoors_000_010
    vkitti2        <scene>/<variation>/Camera_<c>/<frame>, e.g. Scene01/clone/Camera_0/00000
  Predictions match the image size or are smaller with the same aspect (bilinear, renormalized).
  A missing or misnamed file is an error naming the expected path.
checkpoint (--workdir): "generate a surface normal map" prompts, decoded by tasks.normals and
  written as OUT/predictions/NAME/<id>.npy (Vision Banana axes).
"""


def make_source(parser, args):
    """DSINE layout when --dsine-root is given, else the dataset's own reader."""
    from data_mix import sources

    if args.dsine_root is not None:
        return sources.DSINENormalsSource(args.dsine_root, split_file=args.dsine_split, dataset=args.dataset)
    if args.dataset == "nyuv2":
        if args.nyuv2_mat is None or args.nyuv2_normals is None:
            parser.error("--dataset nyuv2 needs --nyuv2-mat and --nyuv2-normals (or --dsine-root)")
        return sources.NYUv2Source(args.nyuv2_mat, "test", splits_mat=args.nyuv2_splits,
                                   normals_dir=args.nyuv2_normals)
    if args.dataset == "diode":
        if args.diode_root is None:
            parser.error("--dataset diode needs --diode-root (or --dsine-root)")
        return sources.DIODESource(args.diode_root, "val", domain=args.diode_domain, with_normals=True,
                                   normals_convention=args.diode_normals_convention)
    if args.dataset == "vkitti2":
        if args.vkitti2_root is None or args.vkitti2_normals is None:
            parser.error("--dataset vkitti2 needs --vkitti2-root and --vkitti2-normals (or --dsine-root)")
        return sources.VKITTI2Source(args.vkitti2_root, normals_root=args.vkitti2_normals)
    parser.error(f"--dataset {args.dataset} is read from DSINE's evaluation layout: give --dsine-root")


def predict_folder(args, source, indices, folder: pathlib.Path) -> dict:
    """Our checkpoint's normals as <id>.npy (Vision Banana axes) under `folder`."""
    from eval import from_checkpoint

    def jobs():
        for i in indices:
            record = source[i]
            prompt = normals_codec.render_prompt(np.random.default_rng(args.seed + i))
            yield from_checkpoint.Job(record["meta"]["id"], record["image"], prompt, {})

    return from_checkpoint.predict_into(
        args, jobs(), "normals", lambda job, n: preds.write_npy(folder / f"{job.key}.npy", n),
        total=len(indices))


def read_prediction(args, folder, name, key, size) -> np.ndarray:
    path = folder.path(key)
    pred = preds.read_normals(path, cli.per_model(args, "convention", name))
    return preds.to_size(pred, size, "normals", str(path))


def _worst_grid(args, out, name, source, folder, per_image, k):
    worst = sorted(per_image, key=lambda r: (-r["mean"], r["name"]))[:k]
    rows, titles = [], []
    for r in worst:
        record = source[r["index"]]
        gt = record["normals"]
        pred = read_prediction(args, folder, name, r["name"], gt.shape[:2])
        valid = np.linalg.norm(gt, axis=-1) > 0
        err = np.where(valid, angular_error_deg(pred, gt), np.nan)
        gt_rgb = np.where(valid[..., None], normals_codec.encode(gt), 0).astype(np.uint8)  # invalid: black
        panels = [record["image"], normals_codec.encode(pred), gt_rgb, report.heatmap(err, 60.0)]
        rows.append([report.thumbnail(p) for p in panels])
        titles.append(f"{r['name']}\nmean {report.fmt(r['mean'], 1)} deg")
    return report.image_grid(out / f"worst_{name}.png", rows,
                             col_titles=["input", name, "ground truth", "angular error (0..60 deg)"],
                             row_titles=titles, title=f"{args.dataset} normals: highest mean error ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = cli.make_parser("eval.normals", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
    d.add_argument("--dataset", required=True, choices=DATASETS,
                   help="benchmark (chooses the reader and the reference rows)")
    d.add_argument("--dsine-root", type=pathlib.Path, help="DSINE evaluation layout folder of the dataset")
    d.add_argument("--dsine-split", type=pathlib.Path, help="optional split file of the DSINE layout")
    d.add_argument("--nyuv2-mat", type=pathlib.Path)
    d.add_argument("--nyuv2-splits", type=pathlib.Path)
    d.add_argument("--nyuv2-normals", type=pathlib.Path, help="folder of {index:06d}_normal.png / .npy")
    d.add_argument("--diode-root", type=pathlib.Path)
    d.add_argument("--diode-domain", choices=("indoors", "outdoor", "all"), default="indoors")
    d.add_argument("--diode-normals-convention", choices=("vision_banana", "opencv"), default="vision_banana")
    d.add_argument("--vkitti2-root", type=pathlib.Path)
    d.add_argument("--vkitti2-normals", type=pathlib.Path, help="normals tree mirroring the depth tree")
    d.add_argument("--convention", action=cli.PerModel, choices=preds.NORMAL_CONVENTIONS,
                   default="vision_banana", metavar="[NAME=]CONVENTION",
                   help=f"axes of prediction files: {', '.join(preds.NORMAL_CONVENTIONS)}")
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args, ("convention",))
    source = make_source(parser, args)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, folders, evaluators = {}, {}, {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        folder = cli.prediction_path(args, model, entries[model.name],
                                  lambda folder: predict_folder(args, source, indices, folder))
        if model.kind == "checkpoint":  # written by us in the Vision Banana axes
            args.convention = {**args.convention, model.name: "vision_banana"}
        folders[model.name] = preds.PredictionFolder(folder, (".npy", ".png"), f"model {model.name!r}")
        evaluators[model.name] = NormalsEvaluator()
    index_of = {}
    for i in cli.progress(indices, args, desc=f"score {args.dataset}", unit="img"):
        record = source[i]
        key = record["meta"]["id"]
        index_of[key] = i
        gt = record["normals"]
        for name, folder in folders.items():
            evaluators[name].add(read_prediction(args, folder, name, key, gt.shape[:2]), gt, name=key)
    figures = {}
    for name, entry in entries.items():
        result = evaluators[name].result()
        for r in result["per_image"]:
            r["index"] = index_of[r["name"]]
        entry.update(predictions=str(folders[name].root), convention=cli.per_model(args, "convention", name),
                     result=result, unused_files=folders[name].unused())
        if args.worst > 0 and result["per_image"]:
            figures[f"Worst images: {name}"] = _worst_grid(args, out, name, source, folders[name],
                                                           result["per_image"], args.worst)
    indoor = args.dataset != "diode" or args.diode_domain == "indoors"  # the paper's DIODE rows are indoor
    refs = references_for(f"normals/{args.dataset}") if indoor else []
    errors = {n: [e["result"]["pooled"]["mean"], e["result"]["pooled"]["median"]] for n, e in entries.items()}
    errors.update({f"{r.model} (paper)": [r.metrics.get("mean"), r.metrics.get("median")] for r in refs})
    under = ["under_11.25", "under_22.5", "under_30"]
    figures = {"Angular error": report.bar_chart(out / "chart_errors.png", ["mean", "median"], errors,
                                                 ylabel="degrees (pooled)", title=f"{args.dataset} normals"),
               "Pixels within a threshold": report.bar_chart(
                   out / "chart_thresholds.png", ["< 11.25 deg", "< 22.5 deg", "< 30 deg"],
                   {n: [e["result"]["pooled"][u] for u in under] for n, e in entries.items()},
                   ylabel="% of pixels (pooled)", title=f"{args.dataset} normals", ylim=(0, 100)), **figures}
    limit = f"; first {len(indices)} of {len(source)} (--limit)" if args.limit else ""
    pooled = [report.Column(("pooled", k), label) for k, label in
              (("mean", "mean"), ("median", "median"), ("rmse", "RMSE"), ("under_11.25", "% < 11.25"),
               ("under_22.5", "% < 22.5"), ("under_30", "% < 30"))]
    report.write_report(
        out, benchmark=f"normals/{args.dataset}", title=f"Surface normals: {args.dataset}", models=entries,
        references=refs,
        columns=[report.Column(c.key, c.label, 3 if c.label in ("mean", "median") else 2) for c in pooled]
        + [report.Column(("per_image_mean", "mean"), "per-image mean", 2),
           report.Column(("per_image_mean", "median"), "per-image median", 2),
           report.Column("num_images", "images", 0)],
        intro=[f"Dataset: {args.dataset} from {args.dsine_root or 'its own reader'} "
               f"({len(indices)} images{limit})",
               "Protocol: angular error in degrees; pooled over all valid pixels (DSINE) and mean of "
               "per-image statistics (Marigold); the paper's rows (mean / median) fill the pooled columns",
               "Prediction conventions: " + ", ".join(f"{n}: {e['convention']}" for n, e in entries.items()),
               *source.notes],
        figures=figures,
        extra={"dataset": {"name": args.dataset, "num_images": len(indices), "num_available": len(source),
                           "notes": list(source.notes)},
               "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
