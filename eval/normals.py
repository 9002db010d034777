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

import numpy as np

from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics.normals import angular_error_deg
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


UNDER = ("under_11.25", "under_22.5", "under_30")


class Normals(runner.Benchmark):
    module, task, extensions = "eval.normals", "normals", (".npy", ".png")
    per_model_options, write_as, truth_key = ("convention",), (".npy", preds.write_npy), "normals"
    checkpoint_options = {"convention": "vision_banana"}  # written by us in the Vision Banana axes
    resize, worst_key, worst_highest, worst_label, worst_digits = "normals", "mean", True, "mean", 1
    grid_columns = ("input", "{name}", "ground truth", "angular error (0..60 deg)")
    grid_title = "{args.dataset} normals: highest mean error ({name})"
    benchmark, title = "normals/{args.dataset}", "Surface normals: {args.dataset}"
    columns = [report.Column(("pooled", k), label, 3 if k in ("mean", "median") else 2) for k, label in
               (("mean", "mean"), ("median", "median"), ("rmse", "RMSE"), ("under_11.25", "% < 11.25"),
                ("under_22.5", "% < 22.5"), ("under_30", "% < 30"))]
    columns += [report.Column(("per_image_mean", "mean"), "per-image mean", 2),
                report.Column(("per_image_mean", "median"), "per-image median", 2),
                report.Column("num_images", "images", 0)]

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--dataset", required=True, choices=DATASETS,
                       help="benchmark (chooses the reader and the reference rows)")
        d.add_argument("--dsine-root", type=pathlib.Path, help="DSINE evaluation layout folder of the dataset")
        d.add_argument("--dsine-split", type=pathlib.Path, help="optional split file of the DSINE layout")
        for flag, text in (("nyuv2-mat", None), ("nyuv2-splits", None),
                           ("nyuv2-normals", "folder of {index:06d}_normal.png / .npy"), ("diode-root", None)):
            d.add_argument(f"--{flag}", type=pathlib.Path, help=text)
        d.add_argument("--diode-domain", choices=("indoors", "outdoor", "all"), default="indoors")
        d.add_argument("--diode-normals-convention", choices=("vision_banana", "opencv"), default="vision_banana")
        d.add_argument("--vkitti2-root", type=pathlib.Path)
        d.add_argument("--vkitti2-normals", type=pathlib.Path, help="normals tree mirroring the depth tree")
        d.add_argument("--convention", action=cli.PerModel, choices=preds.NORMAL_CONVENTIONS,
                       default="vision_banana", metavar="[NAME=]CONVENTION",
                       help=f"axes of prediction files: {', '.join(preds.NORMAL_CONVENTIONS)}")

    def open(self):
        """DSINE layout when --dsine-root is given, else the dataset's own reader."""
        from data_mix import sources

        a = self.args
        need = {"nyuv2": ("nyuv2_mat", "nyuv2_normals"), "diode": ("diode_root",),
                "vkitti2": ("vkitti2_root", "vkitti2_normals")}.get(a.dataset)
        if a.dsine_root is not None:
            return sources.DSINENormalsSource(a.dsine_root, split_file=a.dsine_split, dataset=a.dataset)
        if need is None:
            self.parser.error(f"--dataset {a.dataset} is read from DSINE's evaluation layout: give --dsine-root")
        if any(getattr(a, n) is None for n in need):
            flags = " and ".join("--" + n.replace("_", "-") for n in need)
            self.parser.error(f"--dataset {a.dataset} needs {flags} (or --dsine-root)")
        if a.dataset == "nyuv2":
            return sources.NYUv2Source(a.nyuv2_mat, "test", splits_mat=a.nyuv2_splits, normals_dir=a.nyuv2_normals)
        if a.dataset == "diode":
            return sources.DIODESource(a.diode_root, "val", domain=a.diode_domain, with_normals=True,
                                       normals_convention=a.diode_normals_convention)
        return sources.VKITTI2Source(a.vkitti2_root, normals_root=a.vkitti2_normals)

    def job(self, item, record, n):
        return normals_codec.render_prompt(np.random.default_rng(self.args.seed + n)), {}

    def read_file(self, model, path):
        return preds.read_normals(path, self.option("convention", model))

    def panels(self, model, item, r, record, gt, pred):
        valid = np.linalg.norm(gt, axis=-1) > 0
        err = np.where(valid, angular_error_deg(pred, gt), np.nan)
        gt_rgb = np.where(valid[..., None], normals_codec.encode(gt), 0).astype(np.uint8)  # invalid: black
        return [record["image"], normals_codec.encode(pred), gt_rgb, report.heatmap(err, 60.0)]

    def row_title(self, item, r):
        return super().row_title(item, r) + " deg"

    def references(self):
        a = self.args  # the paper's DIODE rows are indoor
        return references_for(f"normals/{a.dataset}") if a.dataset != "diode" or a.diode_domain == "indoors" else []

    def charts(self, entries, refs):
        title = f"{self.args.dataset} normals"
        return {"Angular error": self.chart("chart_errors.png", ["mean", "median"],
                                            lambda r: [r["pooled"]["mean"], r["pooled"]["median"]], entries, refs,
                                            paper=("mean", "median"), ylabel="degrees (pooled)", title=title),
                "Pixels within a threshold": self.chart(
                    "chart_thresholds.png", ["< 11.25 deg", "< 22.5 deg", "< 30 deg"],
                    lambda r: [r["pooled"][u] for u in UNDER], entries, ylabel="% of pixels (pooled)", title=title,
                    ylim=(0, 100))}

    def dataset(self):
        a = self.args
        return f"{a.dataset} from {a.dsine_root or 'its own reader'}", {"name": a.dataset,
                                                                         "num_images": len(self.indices)}

    def protocol(self, entries):
        return ["Protocol: angular error in degrees; pooled over all valid pixels (DSINE) and mean of "
                "per-image statistics (Marigold); the paper's rows (mean / median) fill the pooled columns",
                "Prediction conventions: " + ", ".join(f"{k}: {e['convention']}" for k, e in entries.items())]


main = runner.main_of(Normals, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
