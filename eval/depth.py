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

import numpy as np

from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task, table
from eval.metrics.depth import METRICS, align
from eval.metrics.depth_presets import KITTI_BENCHMARK_HW, get_preset, kitti_benchmark_crop
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


SOURCES = {"nyuv2": ("nyuv2_mat",), "kitti": ("kitti_raw", "kitti_depth", "kitti_split"),
           "diode": ("diode_root",), "eth3d": ("eth3d_root",), "ibims1": ("ibims_root",),
           "scannet": ("scannet_root",)}


class Depth(runner.Benchmark):
    module, task, extensions = "eval.depth", "depth", (".npy", ".png")
    per_model_options, write_as = ("alignment", "png_scale"), (".npy", preds.write_npy)
    worst_key, worst_highest, worst_label = "abs_rel", True, "AbsRel"
    grid_columns = ("input", "{name}", "ground truth", "AbsRel (0..0.5)")
    grid_title, benchmark = "{args.dataset}: highest AbsRel ({name})", "depth/{args.dataset}"
    title = "Metric depth: {args.dataset}"
    columns = [report.Column.of(table.METRICS[k]) for k in ("delta1", "abs_rel", "delta2", "delta3", "rmse", "silog")]
    columns += [report.Column("num_images", "images", 0)]

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--dataset", required=True, choices=DATASETS)
        paths = {"nyuv2-mat": "nyu_depth_v2_labeled.mat", "nyuv2-splits": "official splits.mat (default: the "
                 "embedded test list)", "kitti-raw": "KITTI raw data root ({date}/...)",
                 "kitti-depth": "data_depth_annotated folder", "kitti-split": "Eigen test split file"}
        for flag, text in paths.items():
            d.add_argument(f"--{flag}", type=pathlib.Path, help=text)
        d.add_argument("--nyu-depth", choices=("raw", "inpainted"), default="raw",
                       help="NYUv2 ground truth: raw = rawDepths, 0 = invalid (default, as Marigold / BTS); "
                            "inpainted = the colorization-filled depths")
        d.add_argument("--kitti-crop", choices=("eigen", "garg"), default="eigen",
                       help="evaluation mask on the 352x1216 benchmark crop (default eigen, as Marigold)")
        d.add_argument("--diode-root", type=pathlib.Path, help="DIODE folder holding val/")
        d.add_argument("--diode-domain", choices=("indoors", "outdoor", "all"), default="indoors")
        paths = {"eth3d-root": None, "eth3d-list": "optional 'rgb depth' pairs file", "ibims-root":
                 "ibims1_core_mat folder", "scannet-root": None, "scannet-list": "optional 'color depth' pairs file"}
        for flag, text in paths.items():
            d.add_argument(f"--{flag}", type=pathlib.Path, help=text)
        d.add_argument("--alignment", action=cli.PerModel, choices=ALIGNMENTS, default="none",
                       metavar="[NAME=]METHOD", help=f"per-image alignment: {', '.join(ALIGNMENTS)} (default none)")
        d.add_argument("--png-scale", action=cli.PerModel, type=float, default=None, metavar="[NAME=]SCALE",
                       help="stored PNG value per metre")

    def open(self):
        from data_mix import sources

        a = self.args
        self.need(*SOURCES[a.dataset])
        self.preset = get_preset(f"kitti_{a.kitti_crop}" if a.dataset == "kitti" else a.dataset)
        return {"nyuv2": lambda: sources.NYUv2Source.for_depth_benchmark(a.nyuv2_mat, depth=a.nyu_depth,
                                                                      splits_mat=a.nyuv2_splits),
                "kitti": lambda: sources.KITTIDepthSource(a.kitti_raw, a.kitti_depth, a.kitti_split),
                "diode": lambda: sources.DIODESource(a.diode_root, "val", domain=a.diode_domain),
                "eth3d": lambda: sources.ETH3DSource(a.eth3d_root, file_list=a.eth3d_list),
                "ibims1": lambda: sources.IBimsSource(a.ibims_root),
                "scannet": lambda: sources.ScanNetSource(a.scannet_root, file_list=a.scannet_list)}[a.dataset]()

    def truth(self, item, record):
        """(depth float32 (H, W) metres on the scored frame, dataset mask or None, image (H, W))."""
        depth, shape, kitti = record["depth"], record["image"].shape[:2], self.args.dataset == "kitti"
        mask = np.isfinite(depth) if self.args.dataset == "diode" else None  # the reader: NaN outside the mask
        return (kitti_benchmark_crop(depth) if kitti else depth), mask, shape

    def job(self, item, record, n):
        return depth_codec.render_prompt(np.random.default_rng(self.args.seed + n), "rainbow"), {"colormap": "rainbow"}

    def evaluator(self, model):
        return for_task("depth", preset=self.preset, alignment=self.option("alignment", model))

    def read(self, model, item, gt):
        """The prediction on the scored frame (KITTI: the benchmark crop of the full frame)."""
        path = self.readers[model.name].path(item.key)
        pred = preds.read_depth(path, self.option("png_scale", model))
        if self.args.dataset == "kitti" and pred.shape == KITTI_BENCHMARK_HW:
            return pred
        pred = preds.to_size(pred, gt[2], "depth", str(path))
        return kitti_benchmark_crop(pred) if self.args.dataset == "kitti" else pred

    def accumulate(self, ev, item, pred, gt):
        return ev.add(pred, gt[0], gt[1], name=item.key) or {}

    def panels(self, model, item, r, record, gt, pred):
        (gt, mask, _), ev = gt, self.evaluator(model)
        valid = ev.valid_mask(gt, mask)
        shown = np.clip(align(pred, gt, valid, ev.alignment)[0], *ev.preset.pred_range)
        image = kitti_benchmark_crop(record["image"]) if self.args.dataset == "kitti" else record["image"]
        err = np.where(valid, np.abs(shown - gt) / np.where(valid, gt, 1), np.nan)
        return [image, depth_codec.encode(shown.astype(np.float32)), depth_codec.encode(gt), report.heatmap(err, 0.5)]

    def references(self):
        a = self.args
        return references_for(f"depth/{a.dataset}") if a.dataset != "diode" or a.diode_domain == "indoors" else []

    def charts(self, entries, refs):
        return {"delta1 and AbsRel": self.chart(
            "chart_metrics.png", ["delta1", "AbsRel"], lambda r: [r["metrics"]["delta1"], r["metrics"]["abs_rel"]],
            entries, refs, paper=("delta1", "abs_rel"), ylabel="value", title=f"{self.args.dataset} depth")}

    def dataset(self):
        a, n = self.args, len(self.indices)
        return (a.dataset + (" {counts}, domain " + a.diode_domain if a.dataset == "diode" else ""),
                {"name": a.dataset, "num_images": n, **({"nyu_depth": a.nyu_depth} if a.dataset == "nyuv2" else {})})

    def protocol(self, entries):
        p = self.preset
        return [f"Protocol: per-image metrics averaged over images (Marigold); preset {p.name}: "
                f"{p.min_depth:g} < d < {p.max_depth:g} m, crop {p.crop}, predictions "
                f"clipped to {p.pred_range[0]:g}..{p.pred_range[1]:g} m ({p.source})",
                "Alignment: " + ", ".join(f"{n}: {e['alignment']}" for n, e in entries.items())]

    def extra(self):
        return {"metrics": list(METRICS)}


main = runner.main_of(Depth, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
