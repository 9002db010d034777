"""COCO instance segmentation (val2017): mask AP through pycocotools COCOeval (iouType="segm").

    python -m eval.coco_instances --coco-annotations annotations/instances_val2017.json \\
        --coco-images val2017 --predictions results.json --baseline sam3=sam3.json --out OUT

Scores come from `eval.metrics.CocoSegmEvaluator` (pycocotools' own numbers). Writes
OUT/results.json, OUT/report.md, OUT/chart_ap.png, OUT/chart_class_ap.png and
OUT/worst_<model>.png (images with the lowest recall of ground-truth instances at IoU 0.5:
input / detections with score >= 0.5 / ground truth, each instance in its own color).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task
from eval.references import references_for

RESULTS_NAME = "coco_results.json"
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


def load_detections(path: pathlib.Path, gt, what: str) -> list[dict]:
    """The checked detection list of a results file (or a folder holding RESULTS_NAME)."""
    file = path / RESULTS_NAME if path.is_dir() else path
    if not file.is_file():
        raise preds.MissingPredictionError(f"{what}: no COCO results file: expected {file}")
    try:
        dets = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: {file} is not valid JSON: {e}") from None
    if not isinstance(dets, list):
        raise ValueError(f"{what}: {file} must hold a JSON list of detections, got {type(dets).__name__}")
    cats = set(gt.getCatIds())
    for n, d in enumerate(dets):
        missing = [k for k in ("image_id", "category_id", "segmentation", "score") if k not in d]
        if missing:
            raise ValueError(f"{what}: {file} entry {n} lacks {missing} "
                             "(every detection needs a score and an RLE)")
        if d["image_id"] not in gt.imgs:
            raise ValueError(f"{what}: {file} entry {n}: image_id {d['image_id']} is not in the annotations")
        if d["category_id"] not in cats:
            raise ValueError(f"{what}: {file} entry {n}: category_id {d['category_id']} is not in the "
                             "annotations")
        seg = d["segmentation"]
        info = gt.imgs[d["image_id"]]
        if not isinstance(seg, dict) or list(seg.get("size", [])) != [info["height"], info["width"]]:
            raise ValueError(f"{what}: {file} entry {n}: segmentation must be an RLE of size "
                             f"[{info['height']}, {info['width']}] (image {d['image_id']})")
    return dets


class Detections:
    """A checked COCO results file, its detections grouped by scored image."""

    def __init__(self, path: pathlib.Path, gt, what: str, image_ids):
        self.path, self.dets = path, load_detections(path, gt, what)
        self.by_image: dict[int, list[dict]] = {}
        for det in self.dets:
            if det["image_id"] in image_ids:
                self.by_image.setdefault(det["image_id"], []).append(det)

    def unused(self) -> list[dict]:
        """Detections on images outside the scored ones (--limit)."""
        kept = {id(d) for found in self.by_image.values() for d in found}
        return [d for d in self.dets if id(d) not in kept]


class COCOInstances(runner.Benchmark):
    module, task, ensemble = "eval.coco_instances", "instance", 1
    worst_key, grid_title = "recall", "COCO: lowest instance recall ({name})"
    grid_columns = ("input", f"{{name}} (score >= {SCORE_SHOWN})", "ground truth")

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
        return i

    def items(self, i, record):
        return [runner.Item(str(self.source.image_ids[i]), i, {"image_id": self.source.image_ids[i]})]

    def jobs(self, indices):
        """One instance prompt per (image, category) of the annotations."""
        from eval import from_checkpoint
        from tasks import instance

        self.detections, n = [], 0
        for i in indices:
            record = self.source[i]
            for cat_id, name in self.categories.items():
                prompt = instance.render_prompt(np.random.default_rng(self.args.seed + n), name, state_background=True)
                n += 1
                yield from_checkpoint.Job(f"{record['meta']['id']}/{cat_id}", record["image"], prompt,
                                          {"background": instance.BLACK})

    def num_jobs(self, indices):
        return len(indices) * len(self.categories)

    def write(self, folder, job, found):
        from tasks import instance

        image_id, cat_id = (int(v) for v in job.key.split("/"))
        rles = instance.to_rle(found.masks) if len(found.masks) else []
        for rle, score in zip(rles, found.scores, strict=True):
            self.detections.append({"image_id": image_id, "category_id": cat_id, "segmentation": rle,
                                    "score": float(score)})

    def after_predict(self, folder, made):
        report.write_json(folder / RESULTS_NAME, self.detections)
        return made

    def open_predictions(self, model, path):
        image_ids = {self.source.image_ids[i] for i in self.indices}
        return Detections(path, self.gt, f"model {model.name!r}", image_ids)

    def evaluator(self, model):
        return for_task("instance", ground_truth=self.gt)

    def read(self, model, item, gt):
        return self.readers[model.name].by_image.get(item.info["image_id"], [])

    def accumulate(self, ev, item, found, gt):
        image_id, info = item.info["image_id"], self.gt.imgs[item.info["image_id"]]
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

    def panels(self, model, item, r):
        from tasks import instance

        record = self.source[item.index]
        shape = record["image"].shape[:2]
        shown = [preds.decode_rle(d["segmentation"]) for d in self.read(model, item, None) if d["score"] >= SCORE_SHOWN]
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

    def report(self, entries):
        a, n = self.args, len(self.indices)
        return dict(
            benchmark="coco_instances", title="COCO instance segmentation (mask AP)",
            references=references_for("coco_instances"),
            columns=[report.Column(s, s) for s in STATS] + [report.Column("AR100", "AR100"),
                                                            report.Column("num_detections", "detections", 0)],
            intro=[f"Dataset: {a.coco_annotations} ({n} images{self.limit_note(n, 'images by id')})",
                   "Protocol: pycocotools COCOeval, iouType segm, RLE masks with scores; scored images only"],
            extra={"dataset": {"annotations": str(a.coco_annotations), "num_images": n,
                               "num_available": len(self.source)}})


STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def image_recall(gt, image_id: int, dets: list[dict]) -> tuple[float | None, int]:
    """(fraction of non-crowd ground-truth instances matched at IoU >= 0.5 by a detection of
    their category, number of such instances); None when the image has none."""
    anns = [a for a in gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    if not anns:
        return None, 0
    hit = 0
    for ann in anns:
        cands = [d["segmentation"] for d in dets if d["category_id"] == ann["category_id"]]
        if cands:
            rle = gt.annToRLE(ann)
            hit += bool((mask_utils.iou([_rle(c) for c in cands], [rle], [0]) >= 0.5).any())
    return hit / len(anns), len(anns)


def _rle(seg: dict) -> dict:
    return {"size": seg["size"], "counts": seg["counts"].encode("ascii") if isinstance(seg["counts"], str)
            else seg["counts"]}


def main(argv: Sequence[str] | None = None) -> dict:
    return runner.run(COCOInstances, __doc__, EPILOG, argv)


if __name__ == "__main__":
    cli.run(main)
