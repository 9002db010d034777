"""Medical-style binary segmentation (Kvasir-SEG layout): Dice, HD95, easy / hard strata.

    python -m eval.binary_masks --dataset-root Kvasir-SEG --predictions DIR --baseline unet=DIR2 \\
        --reference-scores ref_dice.json --out OUT

Each case scores Dice (%) and HD95 (pixels, MedPy's definition) with
`eval.metrics.BinaryMaskEvaluator`; means are reported over all cases and over the easy / hard
strata, the 5 % of cases a reference model scores best / worst (`--reference-scores FILE` or
`--reference-model NAME`, one of the scored models). Writes OUT/results.json, OUT/report.md,
OUT/chart_dice.png, OUT/chart_hd95.png and OUT/worst_<model>.png (lowest Dice: input /
prediction / ground truth).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from data_mix.sources.paired_folders import IMAGE_EXTENSIONS, BinaryMaskFolderSource
from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task
from eval.metrics.binary import load_reference_scores, strata

EPILOG = """\
dataset: ROOT/images/<name>.<ext> with ROOT/masks/<name><--mask-suffix>.<ext> (any of
  .png .jpg .jpeg .bmp .tif); masks: 0/1, or foreground > 127 (JPEG noise tolerated).
predictions (--predictions / --baseline): DIR/<name>.png (or another image extension), one
  single-channel mask per case, 0/255 or 0/1, at the image size or smaller with the same
  aspect (nearest). A missing or misnamed file is an error naming the expected path.
reference scores (--reference-scores): JSON {"<name>": score, ...} or CSV lines "<name>,score"
  (a header line is skipped), scores in --strata-metric's unit (Dice % or HD95 px).
checkpoint (--workdir): "generate a binary mask of the <--target>" prompts, decoded by
  tasks.binary (white on black, threshold at half way), written as OUT/predictions/NAME/<name>.png.
"""


class BinaryMasks(runner.Benchmark):
    module, task, extensions, truth_key = "eval.binary_masks", "binary", IMAGE_EXTENSIONS, "mask"
    write_as, read_as, index_records = (".png", preds.write_mask), preds.read_mask, False
    worst_caption, worst_key, grid_title = "Worst cases", "dice", "Binary masks: lowest Dice ({name})"
    benchmark, title, unit = "binary_masks", "Binary segmentation: {source.dataset}", "cases"
    limit_unit, count_key, reference_key = "cases", "num_cases", "binary_masks"
    dataset_text, dataset_info = "{args.dataset_root}", {"root": "dataset_root"}

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--dataset-root", type=pathlib.Path, required=True, help="folder with images/ and masks/")
        d.add_argument("--images", default="images", help="image sub-folder (default images)")
        d.add_argument("--masks", default="masks", help="mask sub-folder (default masks)")
        d.add_argument("--mask-suffix", default="", help="mask name = image name + suffix (ISIC: _segmentation)")
        d.add_argument("--target", default="polyp", help="the segmented object, named in our prompts")
        d.add_argument("--reference-scores", type=pathlib.Path, help="a reference model's per-case scores")
        d.add_argument("--reference-model", help="use this scored model's per-case scores for the strata")
        d.add_argument("--strata-metric", choices=("dice", "hd95"), default="dice")
        d.add_argument("--strata-fraction", type=float, default=0.05, help="share of easy / hard cases (0.05)")
        d.add_argument("--empty-hd95", choices=("diagonal", "nan"), default="diagonal",
                       help="HD95 when exactly one mask is empty: the image diagonal, or undefined")

    def open(self):
        a = self.args
        if a.reference_scores and a.reference_model:
            self.parser.error("give --reference-scores or --reference-model, not both")
        if a.reference_model and a.reference_model not in [m.name for m in self.models]:
            self.parser.error(f"--reference-model {a.reference_model!r} is not one of the scored models")
        return BinaryMaskFolderSource(a.dataset_root, images=a.images, masks=a.masks,
                                      mask_suffix=a.mask_suffix, target=a.target)

    def job(self, item, record, n):
        from tasks import binary

        return binary.render_prompt(np.random.default_rng(self.args.seed + n), self.args.target), {}

    def evaluator(self, model):
        return for_task("binary", empty_hd95=self.args.empty_hd95)

    def finish(self, evaluators):
        """The easy / hard strata from --reference-scores or a scored model's own cases."""
        a, self.groups, self.info = self.args, None, None
        if not (a.reference_scores or a.reference_model):
            return
        scored = set(next(iter(evaluators.values())).cases)
        if a.reference_scores:
            reference, what = load_reference_scores(a.reference_scores), f"--reference-scores {a.reference_scores}"
            unknown, missing = sorted(set(reference) - scored), sorted(scored - set(reference))
            if unknown and not a.limit:
                raise ValueError(f"{what} names cases not in the dataset: {unknown[:5]}")
            if missing:
                raise ValueError(f"{what} has no score for cases {missing[:5]} ({len(missing)} in all)")
            reference = {k: v for k, v in reference.items() if k in scored}
        else:
            reference = {k: v[a.strata_metric] for k, v in evaluators[a.reference_model].cases.items()}
        self.groups = strata({k: v for k, v in reference.items() if not math.isnan(v)}, a.strata_fraction,
                             higher_is_better=a.strata_metric == "dice")
        self.info = {"reference": str(a.reference_scores or a.reference_model), "metric": a.strata_metric,
                     "fraction": a.strata_fraction, "cases": self.groups}

    def result(self, model, ev, records):
        return ev.result(self.groups, per_case=True)

    def panels(self, model, item, r, record, gt, pred):
        image = record["image"]
        return [image, report.overlay(image, pred, (255, 40, 40)), report.overlay(image, gt, (40, 220, 40))]

    def row_title(self, item, r):
        return f"{item.key}\nDice {report.fmt(r['dice'], 1)}, HD95 {report.fmt(r['hd95'], 1)}"

    def report_columns(self):
        columns = [report.Column(f"{p}.{m}", f"{p} {label}", 2) for p in self.parts()
                   for m, label in (("dice", "Dice %"), ("hd95", "HD95 px"))]
        return columns + [report.Column("all.num_cases", "cases", 0)]

    def parts(self):
        return ["all"] + (["easy", "hard"] if self.groups else [])

    def charts(self, entries, refs):
        parts = self.parts()
        return {"Dice": self.chart("chart_dice.png", parts, lambda r: [r[p]["dice"] for p in parts], entries,
                                   ylabel="Dice (%)", title="Dice", ylim=(0, 100)),
                "HD95": self.chart("chart_hd95.png", parts, lambda r: [r[p]["hd95"] for p in parts], entries,
                                   ylabel="HD95 (pixels)", title="HD95")}

    def protocol(self, entries):
        a, info = self.args, self.info
        return [f"Protocol: Dice in %, HD95 in pixels (MedPy); one empty mask: HD95 = {a.empty_hd95}",
                "Strata: the {:g} % best (easy) and worst (hard) cases of {} by {}".format(
                    100 * a.strata_fraction, info["reference"], a.strata_metric)
                if info else "Strata: none (give --reference-scores or --reference-model)"]

    def extra(self):
        return {"strata": self.info}


main = runner.main_of(BinaryMasks, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
