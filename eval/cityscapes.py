"""Cityscapes val semantic segmentation (19 classes): mIoU, category IoU, iIoU as cityscapesScripts.

    python -m eval.cityscapes --cityscapes-root ROOT --predictions DIR --baseline sam3=DIR2 --out OUT
    python -m eval.cityscapes --cityscapes-root ROOT --workdir runs/x --out OUT

ROOT holds leftImg8bit/ and gtFine/ (extracted) or the official zips (read in place). Scores
come from `eval.metrics.cityscapes` (equal to cityscapesScripts 2.3.0 evalPixelLevelSemantic-
Labeling to 1e-9), counted on all cores. Writes OUT/results.json, OUT/report.md (beside the
paper's reference rows), OUT/chart_class_iou.png (per-class IoU, all models side by side) and
OUT/worst_<model>.png (the images with the lowest per-image mIoU: input / prediction / ground
truth, in the official colors).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.cityscapes import CLASSES, CityscapesSource, semantic_to_label_ids
from data_mix.sources.images import decode_gray, decode_rgb
from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import cityscapes_files as files
from eval.metrics import cityscapes_labels as cl
from eval.metrics import for_task
from eval.metrics.cityscapes import image_stats
from eval.references import references_for

FORMATS = ("auto", "label", "train", "color")
EPILOG = """\
predictions folder (--predictions / --baseline), cityscapesScripts' rule:
  one PNG per val image named <city>_<seq>_<frame>*.png anywhere under the folder, e.g.
  frankfurt/frankfurt_000000_000294_pred.png, at the label size (2048x1024) or lower with the
  same aspect (upsampled with nearest). --pred-format picks what the PNG holds:
    label  single-channel labelIds 0..33 (the official format; palette PNGs: their indices)
    train  single-channel trainIds 0..18, 255 = void
    color  RGB painted with a color map: --color-map FILE (JSON {"road": [128, 64, 128], ...};
           keys are Cityscapes label names or label ids, values [r, g, b], "#rrggbb" or color
           names) or, without it, the official Cityscapes colors; each pixel takes the nearest
           color within --color-max-distance (farther: unlabeled, a miss)
    auto   (default) color for 3-channel PNGs, label for single-channel ones
  A ground-truth image without exactly one matching prediction is an error naming it.
  Per-model settings: --pred-format sam3=train, --color-map sam3=FILE.
checkpoint (--workdir): one prompt per image mapping the 19 class names to semantic.palette(19)
  (well-separated colors, stated as JSON, black background); the decoded trainIds are written
  as OUT/predictions/NAME/<city>/<stem>_pred_labelIds.png and scored like any folder.
"""


def ground_truth_members(source: CityscapesSource, i: int) -> tuple[str, str, str]:
    """(image, labelIds, instanceIds) member paths of record i (the layout in the source docs)."""
    stem = source.stems[i]  # leftImg8bit/{split}/{city}/{city}_{seq}_{frame}
    gt = "gtFine" + stem[len("leftImg8bit"):]
    return stem + "_leftImg8bit.png", gt + "_gtFine_labelIds.png", gt + "_gtFine_instanceIds.png"


class Cityscapes(runner.Benchmark):
    module, task, per_model_options = "eval.cityscapes", "semantic", ("pred_format", "color_map")
    checkpoint_options = {"pred_format": "label", "color_map": None}  # written by us as labelId PNGs
    worst_key, worst_label, grid_title = "miou", "mIoU", "Cityscapes: lowest per-image mIoU ({name})"
    benchmark, title = "cityscapes", "Cityscapes {args.split}: semantic segmentation (19 classes)"
    limit_unit, dataset_text = "images", "{args.cityscapes_root}"
    dataset_info = {"root": "cityscapes_root", "split": "split"}
    protocol_text = ("Protocol: cityscapesScripts 2.3.0 evalPixelLevelSemanticLabeling (labelIds; IoU = TP / "
                     "(TP + FP + FN), FP excluding ignored ground truth; means skip undefined classes)")
    columns = [report.Column("miou", "mIoU"), report.Column("category_miou", "category mIoU"),
               report.Column("miiou", "iIoU"), report.Column("category_miiou", "category iIoU")]

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--cityscapes-root", type=pathlib.Path, required=True,
                       help="folder with leftImg8bit/ + gtFine/ or the official zips")
        d.add_argument("--split", default="val", choices=("train", "val"))
        d.add_argument("--pred-format", action=cli.PerModel, choices=FORMATS, default="auto",
                       metavar="[NAME=]FORMAT", help=f"what prediction PNGs hold: {', '.join(FORMATS)}")
        d.add_argument("--color-map", action=cli.PerModel, type=pathlib.Path, default=None,
                       metavar="[NAME=]FILE", help="JSON color map of color predictions")
        d.add_argument("--color-max-distance", type=float, default=96.0,
                       help="RGB distance beyond which a color pixel is unlabeled (default 96)")
        d.add_argument("--threads", type=int, help="scoring threads (default: all cores)")

    def open(self):
        self.color_maps = {}
        return CityscapesSource(self.args.cityscapes_root, self.args.split, with_instances=False)

    def threads(self):
        return self.args.threads or len(os.sched_getaffinity(0))

    def load(self, i):
        """(labelIds uint8 (H, W), instanceIds (H, W)) of record i, without decoding the image."""
        _, label_rel, inst_rel = ground_truth_members(self.source, i)
        labels = self.source.labels
        return (decode_gray(labels.read(label_rel), labels.describe(label_rel), (np.uint8,)),
                decode_gray(labels.read(inst_rel), labels.describe(inst_rel)))

    def items(self, i, record):
        stem = pathlib.PurePosixPath(self.source.stems[i])  # leftImg8bit/{split}/{city}/{name}
        return [runner.Item(stem.name, i, {"job_key": f"{stem.parent.name}/{stem.name}"})]

    def truth(self, item, record):
        return record

    def job(self, item, record, n):
        from tasks import semantic

        colors = semantic.palette(len(CLASSES))
        prompt = semantic.render_prompt(np.random.default_rng(self.args.seed + n), CLASSES, colors,
                                        state_background=True, layout="json")
        return prompt, {"colors": colors, "background": semantic.BLACK, "classes": list(CLASSES)}

    def write(self, folder, job, labels):
        preds.write_png(folder / f"{job.key}_pred_labelIds.png", semantic_to_label_ids(labels))

    def predict(self, folder, indices):
        from tasks import semantic

        made = super().predict(folder, indices)
        return {**made, "palette": semantic.palette(len(CLASSES)).tolist(), "classes": list(CLASSES)}

    def open_predictions(self, model, path):
        gts = [self.source.labels.describe(ground_truth_members(self.source, i)[1]) for i in self.indices]
        try:
            found = files.find_predictions(gts, path)
        except FileNotFoundError as e:
            raise preds.MissingPredictionError(f"model {model.name!r}: {e}") from None
        cmap = self.option("color_map", model)
        self.color_maps[model.name] = files.load_color_map(cmap) if cmap else files.official_color_map()
        return files.PredictionFiles(path, dict(zip(self.indices, found, strict=True)))

    def evaluator(self, model):
        return for_task("semantic", protocol="cityscapes")

    def read(self, model, item, gt):
        path = self.readers[model.name].path(item.index)
        pred = files.to_label_ids(preds.read_image(path), self.option("pred_format", model),
                                  self.color_maps[model.name], self.args.color_max_distance, str(path))
        return preds.to_size(pred, gt[0].shape, "nearest", str(path))

    def measure(self, model, item, gt):
        path = self.readers[model.name].path(item.index)
        return image_stats(self.read(model, item, gt), gt[0], gt[1], name=str(path)), path

    def accumulate(self, ev, item, measured, gt):
        (stats, path), single = measured, for_task("semantic", protocol="cityscapes")
        ev.add_stats(stats)
        single.add_stats(stats)
        return {"id": item.key, "index": item.index, "prediction": str(path), "miou": single.result()["miou"]}

    def entry(self, model):
        fmt, cmap = self.option("pred_format", model), self.option("color_map", model)
        return {**super().entry(model), "color_map": str(cmap) if cmap else ("official" if fmt in ("auto", "color")
                                                                            else None),
                "per_image": [r for _, r in self.records[model.name]]}

    def panels(self, model, item, r, record, gt, pred):
        image_rel = ground_truth_members(self.source, item.index)[0]
        image = decode_rgb(self.source.images.read(image_rel), self.source.images.describe(image_rel))
        return [image, report.colorize(pred, cl.COLORS_BY_LABEL_ID), report.colorize(gt[0], cl.COLORS_BY_LABEL_ID)]

    def charts(self, entries, refs):
        return {"Per-class IoU": self.chart("chart_class_iou.png", cl.EVAL_NAMES,
                                            lambda r: [r["classes"][c] for c in cl.EVAL_NAMES], entries,
                                            ylabel="IoU", title=f"Cityscapes {self.args.split}: per-class IoU",
                                            ylim=(0, 1))}

    def sections(self, entries):
        results = [e["result"] for e in entries.values()]
        rows = {"class": [[c] + [report.fmt(r["classes"][c]) for r in results] for c in cl.EVAL_NAMES],
                "category": [[c] + [report.fmt(r["categories"][c]) for r in results] for c in results[0]["categories"]]}
        return [f"## Per-{k} IoU\n\n" + report.markdown_table([k] + list(entries), v) for k, v in rows.items()]

    def references(self):
        return references_for("cityscapes") if self.args.split == "val" else []


main = runner.main_of(Cityscapes, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
