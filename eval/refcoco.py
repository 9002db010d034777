"""Referring segmentation on RefCOCOg (UMD split, val): cIoU, gIoU, precision@0.5..0.9.

    python -m eval.refcoco --refcoco-root DATA --predictions DIR_OR_JSON --baseline sam3=DIR2 --out OUT

DATA holds refcocog/refs(umd).p, refcocog/instances.json and train2014/ (override each with
--refs-file, --instances-file, --image-dir). Every expression of every referred object is one
sample (`eval.metrics.ReferringEvaluator`): cIoU = summed intersections / summed unions, gIoU =
mean per-expression IoU, precision@t = % of expressions with IoU >= t. Writes
OUT/results.json, OUT/report.md (beside the paper's cIoU rows), OUT/chart_scores.png and
OUT/worst_<model>.png (lowest IoU: input / prediction / ground truth, with the expression).
"""

from __future__ import annotations

import pathlib

import numpy as np

from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics.referring import THRESHOLDS
from eval.references import references_for

EPILOG = """\
predictions (--predictions / --baseline), one mask per expression keyed <ref_id>_<k> (k: the
  expression's 0-based index among its object's sentences in refs(umd).p), either
    a folder of PNG masks DIR/<ref_id>_<k>.png (single channel: foreground > 127, or 0/1), or
    a JSON file {"<ref_id>_<k>": {"size": [H, W], "counts": "<COCO RLE>"}, ...}
  at the image size, or smaller with the same aspect (nearest). A missing key is an error
  naming the expected file or key.
checkpoint (--workdir): one prompt per expression naming it in a stated color on a black
  background (tasks.referring), decoded by nearest color and written as
  OUT/predictions/NAME/<ref_id>_<k>.png.
"""
# The color our model is asked to paint the referred object in (far from the black background).
TARGET_COLOR = (255, 255, 255)


class RefCOCO(runner.Benchmark):
    module, task, worst_caption = "eval.refcoco", "referring", "Worst expressions"
    write_as = (".png", lambda path, masks: preds.write_mask(path, masks[0]))
    worst_key, worst_label, grid_title = "iou", "IoU", "Referring segmentation: lowest IoU ({name})"
    benchmark, title = "refcocog_umd_{args.split}", "Referring segmentation: RefCOCOg (UMD) {args.split}"
    unit = limit_unit = "objects"
    dataset_text, dataset_info = "{args.refs_file}", {"refs_file": "refs_file", "split": "split"}
    count_key = "num_objects"
    protocol_text = ("Protocol: one sample per expression; cIoU = sum of intersections / sum of unions; "
                     "gIoU = mean per-expression IoU; P@t = % of expressions with IoU >= t")
    columns = [report.Column("ciou", "cIoU"), report.Column("giou", "gIoU")]
    columns += [report.Column(("precision", f"{t:g}"), f"P@{t:g} (%)", 1) for t in THRESHOLDS]
    columns += [report.Column("num_expressions", "expressions", 0)]

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--refcoco-root", type=pathlib.Path,
                       help="folder with refcocog/refs(umd).p, refcocog/instances.json, train2014/")
        for flag in ("--refs-file", "--instances-file", "--image-dir"):
            d.add_argument(flag, type=pathlib.Path)
        d.add_argument("--split", default="val", choices=("val", "test", "train", "testA", "testB"),
                       help="refer's split semantics: testA / testB for RefCOCO / RefCOCO+ (refs(unc).p)")

    def open(self):
        from data_mix.sources import RefCOCOSource

        a = self.args
        paths = {"refs_file": ("refcocog", "refs(umd).p"), "instances_file": ("refcocog", "instances.json"),
                 "image_dir": ("train2014",)}
        for dest, parts in paths.items():
            if getattr(a, dest) is None:
                if a.refcoco_root is None:
                    self.parser.error(f"give --refcoco-root or --{dest.replace('_', '-')}")
                setattr(a, dest, a.refcoco_root.joinpath(*parts))
        return RefCOCOSource(a.refs_file, a.instances_file, a.image_dir, a.split)

    def items(self, i, record):
        """Every expression of the record's referred object, keyed <ref_id>_<k>."""
        return [runner.Item(f"{record['meta']['ref_ids'][0]}_{k}", i, {"expression": text})
                for k, text in enumerate(record["referring"][0]["expressions"])]

    def truth(self, item, record):
        return record["referring"][0]["mask"]

    def job(self, item, record, n):
        from tasks import referring

        spec = {"colors": np.array([TARGET_COLOR], np.uint8), "background": referring.BLACK}
        return referring.render_prompt(np.random.default_rng(self.args.seed + n), [item.info["expression"]],
                                       spec["colors"], state_background=True), spec

    def num_jobs(self, indices):
        return None

    def open_predictions(self, model, path):
        return preds.MaskPredictions(path, f"model {model.name!r}")

    def read(self, model, item, gt):
        return preds.to_size(self.readers[model.name].mask(item.key), gt.shape, "nearest", item.key)

    def accumulate(self, ev, item, pred, gt):
        return {"name": item.key, "iou": ev.add(pred, gt, name=item.key)}

    def result(self, model, ev, records):
        result = ev.result(per_expression=True)
        for r, (item, _) in zip(result["per_expression"], records, strict=True):
            r["index"], r["expression"] = item.index, item.info["expression"]
        return result

    def entry(self, model):
        entry = super().entry(model)
        return {**entry, "unused": entry["unused_files"]}

    def panels(self, model, item, r, record, gt, pred):
        image = record["image"]
        return [image, report.overlay(image, pred, (255, 40, 40)), report.overlay(image, gt, (40, 220, 40))]

    def row_title(self, item, r):
        text = item.info["expression"]
        return f"{item.key}: {text if len(text) < 60 else text[:57] + '...'}\nIoU {report.fmt(r['iou'])}"

    def charts(self, entries, refs):
        def scores(r):
            precision = [r["precision"][f"{t:g}"] for t in THRESHOLDS]
            return [r["ciou"], r["giou"]] + [None if p is None else p / 100 for p in precision]
        return {"Scores": self.chart("chart_scores.png", ["cIoU", "gIoU"] + [f"P@{t:g}" for t in THRESHOLDS],
                                     scores, entries, refs, paper=("ciou", "giou") + (None,) * len(THRESHOLDS),
                                     ylabel="fraction", title=f"RefCOCOg {self.args.split}", ylim=(0, 1))}

    def references(self):
        return references_for("refcocog_umd_val") if self.args.split == "val" else []


main = runner.main_of(RefCOCO, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
