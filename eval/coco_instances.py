"""COCO instance segmentation (val2017): mask AP through pycocotools COCOeval (iouType="segm").

    python -m eval.coco_instances --coco-annotations annotations/instances_val2017.json \\
        --coco-images val2017 --predictions results.json --baseline sam3=sam3.json --out OUT

Scores come from `eval.metrics.CocoSegmEvaluator` (pycocotools' own numbers). Writes
OUT/results.json, OUT/report.md, OUT/chart_ap.png, OUT/chart_class_ap.png and
OUT/worst_<model>.png (images with the lowest recall of ground-truth instances at IoU 0.5:
input / detections with score >= 0.5 / ground truth, each instance in its own color).
"""

from __future__ import annotations

import pathlib

import numpy as np

from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task
from eval.metrics.coco import RESULTS_NAME, Detections, image_recall

EPILOG = f"""\
predictions (--predictions / --baseline): a COCO results JSON file (or a folder holding
  {RESULTS_NAME}), a list of detections
    {{"image_id": int, "category_id": int, "score": float,
     "segmentation": {{"size": [H, W], "counts": "<compressed RLE>"}}}}
  as pycocotools' loadRes takes them (what detectron2 / SAM 3 evaluation scripts save). Every
  detection needs a score; image and category ids must exist in the annotations (a wrong id is
  an error naming the entry). Images without detections simply have none. With --limit N, the
  first N images (by id) are scored and detections on other images are dropped.
checkpoint (--workdir): one instance prompt per (image, category) of the annotations
  ("each <category> is colored differently", black background), decoded by
  tasks.instance.decode (color clustering, one confidence score per mask) and written as
  OUT/predictions/NAME/{RESULTS_NAME}. COCO val2017 then means 5000 x 80 generations.
"""
SCORE_SHOWN = 0.5  # detections drawn in the grids


STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


class COCOInstances(runner.Benchmark):
    module, task, ensemble, worst_key = "eval.coco_instances", "instance", 1, "recall"
    grid_title, grid_columns = "COCO: lowest instance recall ({name})", \
        ("input", f"{{name}} (score >= {SCORE_SHOWN})", "ground truth")
    benchmark, title, limit_unit = "coco_instances", "COCO instance segmentation (mask AP)", "images by id"
    dataset_text, dataset_info = "{args.coco_annotations}", {"annotations": "coco_annotations"}
    reference_key = benchmark
    protocol_text = "Protocol: pycocotools COCOeval, iouType segm, RLE masks with scores; scored images only"
    columns = [report.Column(s, s) for s in STATS + ["AR100"]] + [report.Column("num_detections", "detections", 0)]

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--coco-annotations", type=pathlib.Path, required=True, help="instances_val2017.json")
        d.add_argument("--coco-images", type=pathlib.Path, required=True, help="val2017 image folder")

    def open(self):
        from data_mix.sources import COCOInstancesSource

        source = COCOInstancesSource(self.args.coco_annotations, self.args.coco_images)
        self.gt, self.categories = source.coco, {c: source.categories[c] for c in sorted(source.categories)}
        return source

    def load(self, i):
        return self.source.image_ids[i]  # scored from the annotations; grids read the record

    def items(self, i, image_id):
        return [runner.Item(str(image_id), i, {"image_id": image_id})]

    def truth(self, item, image_id):
        return image_id

    def items_of_jobs(self, i, record):
        """One instance prompt per (image, category) of the annotations."""
        return [runner.Item(f"{record['meta']['id']}/{c}", i, {"category": name})
                for c, name in self.categories.items()]

    def job(self, item, record, n):
        from tasks import instance

        rng = np.random.default_rng(self.args.seed + n)
        return instance.render_prompt(rng, item.info["category"], state_background=True), {"background": instance.BLACK}

    def num_jobs(self, indices):
        return len(indices) * len(self.categories)

    def write(self, folder, job, found):
        from tasks import instance

        image_id, cat_id = (int(v) for v in job.key.split("/"))
        rles = instance.to_rle(found.masks) if len(found.masks) else []
        self.detections += [{"image_id": image_id, "category_id": cat_id, "segmentation": rle, "score": float(score)}
                            for rle, score in zip(rles, found.scores, strict=True)]

    def predict(self, folder, indices):
        self.detections = []
        made = super().predict(folder, indices)
        report.write_json(folder / RESULTS_NAME, self.detections)
        return made

    def open_predictions(self, model, path):
        return Detections(path, self.gt, f"model {model.name!r}", {self.source.image_ids[i] for i in self.indices})

    def evaluator(self, model):
        return for_task("instance", ground_truth=self.gt)

    def read(self, model, item, image_id):
        return self.readers[model.name].by_image.get(image_id, [])

    def accumulate(self, ev, item, found, image_id):
        info = self.gt.imgs[image_id]
        masks = np.array([preds.decode_rle(x["segmentation"]) for x in found], bool).reshape(
            len(found), info["height"], info["width"])
        ev.add(image_id, masks, [x["score"] for x in found], [x["category_id"] for x in found])
        recall, count = image_recall(self.gt, image_id, found)
        return {"image_id": image_id, "index": item.index, "recall": recall, "num_instances": count,
                "num_detections": len(found)}

    def worst_order(self, r):
        return None if r["recall"] is None else (r["recall"], -r["num_instances"], r["image_id"])

    def entry(self, model):
        reader = self.readers[model.name]
        return {"predictions": str(reader.path), "per_image": [r for _, r in self.records[model.name]],
                "detections_dropped": len(reader.unused()), "unused_files": []}

    def panels(self, model, item, r, image_id, gt, found):
        from tasks import instance

        record = self.source[item.index]
        shape = record["image"].shape[:2]
        shown = [preds.decode_rle(d["segmentation"]) for d in found if d["score"] >= SCORE_SHOWN]
        truth = [m for m, crowd in zip(record["instance_masks"], record["meta"]["iscrowd"], strict=True) if not crowd]
        return [record["image"]] + [instance.encode(np.array(m, bool).reshape(-1, *shape)) for m in (shown, truth)]

    def row_title(self, item, r):
        return f"image {r['image_id']}\nrecall@0.5 {report.fmt(r['recall'], 2)} of {r['num_instances']}"

    def charts(self, entries, refs):
        names = list(self.categories.values())
        return {"Mask AP": self.chart("chart_ap.png", STATS, lambda r: [r[s] for s in STATS], entries,
                                      ylabel="AP", title="COCO instance segmentation", ylim=(0, 1)),
                "Per-class mask AP": self.chart("chart_class_ap.png", names,
                                                lambda r: [r["per_class_ap"].get(c) for c in names], entries,
                                                ylabel="AP", title="COCO per-class mask AP", ylim=(0, 1))}



main = runner.main_of(COCOInstances, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
