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

from eval import cli, report
from eval import predictions as preds
from eval.metrics.coco import CocoSegmEvaluator, check_scores
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
    check_scores(dets, f"{what}: {file}")  # NaN / inf / non-numeric scores
    return dets


def predict_detections(args, source, indices, categories: dict[int, str]) -> tuple[list[dict], dict]:
    """Our checkpoint's detections: one instance prompt per (image, category)."""
    from eval import from_checkpoint
    from tasks import instance

    def jobs():
        n = 0
        for i in indices:
            record = source[i]
            for cat_id, name in categories.items():
                rng = np.random.default_rng(args.seed + n)
                prompt = instance.render_prompt(rng, name, state_background=True)
                n += 1
                yield from_checkpoint.Job(f"{record['meta']['id']}/{cat_id}", record["image"], prompt,
                                          {"background": instance.BLACK})

    dets = []

    def collect(job, found):
        image_id, cat_id = (int(v) for v in job.key.split("/"))
        rles = instance.to_rle(found.masks) if len(found.masks) else []
        for rle, score in zip(rles, found.scores, strict=True):
            dets.append({"image_id": image_id, "category_id": cat_id, "segmentation": rle,
                         "score": float(score)})

    made = from_checkpoint.predict_into(args, jobs(), "instance", collect, ensemble=1,
                                        total=len(indices) * len(categories))
    return dets, made


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


def _instances_image(masks: list[np.ndarray], shape) -> np.ndarray:
    from tasks import instance

    stack = np.array(masks, bool).reshape(-1, *shape)
    return instance.encode(stack)


def _worst_grid(out, name, source, per_image, by_image, k):
    worst = sorted((r for r in per_image if r["recall"] is not None),
                   key=lambda r: (r["recall"], -r["num_instances"], r["image_id"]))[:k]
    rows, titles = [], []
    for r in worst:
        record = source[r["index"]]
        shape = record["image"].shape[:2]
        shown = [preds.decode_rle(d["segmentation"]) for d in by_image.get(r["image_id"], [])
                 if d["score"] >= SCORE_SHOWN]
        truth = [m for m, crowd in zip(record["instance_masks"], record["meta"]["iscrowd"], strict=True)
                 if not crowd]
        rows.append([report.thumbnail(p) for p in (record["image"], _instances_image(shown, shape),
                                                   _instances_image(truth, shape))])
        recall = report.fmt(r["recall"], 2)
        titles.append(f"image {r['image_id']}\nrecall@0.5 {recall} of {r['num_instances']}")
    return report.image_grid(out / f"worst_{name}.png", rows,
                             col_titles=["input", f"{name} (score >= {SCORE_SHOWN})", "ground truth"],
                             row_titles=titles, title=f"COCO: lowest instance recall ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    from data_mix.sources import COCOInstancesSource

    parser = cli.make_parser("eval.coco_instances", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
    d.add_argument("--coco-annotations", type=pathlib.Path, required=True, help="instances_val2017.json")
    d.add_argument("--coco-images", type=pathlib.Path, required=True, help="val2017 image folder")
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args)
    source = COCOInstancesSource(args.coco_annotations, args.coco_images)
    gt = source.coco
    indices = cli.limit_indices(len(source), args.limit)
    image_ids = [source.image_ids[i] for i in indices]
    index_of = dict(zip(image_ids, indices, strict=True))
    categories = {c: source.categories[c] for c in sorted(source.categories)}
    out = args.out
    entries = {}
    for model in models:
        entry = {"model": model.to_json()}
        what = f"model {model.name!r}"
        if model.kind == "checkpoint":
            dets, entry["checkpoint"] = predict_detections(args, source, indices, categories)
            path = report.write_json(out / "predictions" / model.name / RESULTS_NAME, dets)
        else:
            path = model.path
            dets = load_detections(path, gt, what)
        by_image: dict[int, list[dict]] = {}
        for det in dets:
            if det["image_id"] in index_of:
                by_image.setdefault(det["image_id"], []).append(det)
        evaluator = CocoSegmEvaluator(gt)
        per_image = []
        for image_id in cli.progress(image_ids, args, desc=f"score {model.name}", unit="img"):
            found = by_image.get(image_id, [])
            info = gt.imgs[image_id]
            masks = np.array([preds.decode_rle(x["segmentation"]) for x in found], bool).reshape(
                len(found), info["height"], info["width"])
            evaluator.add(image_id, masks, [x["score"] for x in found], [x["category_id"] for x in found])
            recall, count = image_recall(gt, image_id, found)
            per_image.append({"image_id": image_id, "index": index_of[image_id], "recall": recall,
                              "num_instances": count, "num_detections": len(found)})
        entry.update(predictions=str(path), result=evaluator.result(), per_image=per_image,
                     detections_dropped=len(dets) - sum(map(len, by_image.values())))
        entry["_by_image"] = by_image
        entries[model.name] = entry
    figures = {}
    if args.worst > 0:
        for name, entry in entries.items():
            figures[f"Worst images: {name}"] = _worst_grid(out, name, source, entry["per_image"],
                                                           entry["_by_image"], args.worst)
    for entry in entries.values():
        del entry["_by_image"]
    stats = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    names = list(categories.values())
    figures = {
        "Mask AP": report.bar_chart(out / "chart_ap.png", stats,
                                    {n: [e["result"][s] for s in stats] for n, e in entries.items()},
                                    ylabel="AP", title="COCO instance segmentation", ylim=(0, 1)),
        "Per-class mask AP": report.bar_chart(
            out / "chart_class_ap.png", names,
            {n: [e["result"]["per_class_ap"].get(c) for c in names] for n, e in entries.items()},
            ylabel="AP", title="COCO per-class mask AP", ylim=(0, 1)),
        **figures}
    limit = f"; first {len(indices)} of {len(source)} images by id (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark="coco_instances", title="COCO instance segmentation (mask AP)", models=entries,
        references=references_for("coco_instances"),
        columns=[report.Column(s, s) for s in stats] + [report.Column("AR100", "AR100"),
                                                        report.Column("num_detections", "detections", 0)],
        intro=[f"Dataset: {args.coco_annotations} ({len(indices)} images{limit})",
               "Protocol: pycocotools COCOeval, iouType segm, RLE masks with scores; scored images only"],
        figures=figures,
        extra={"dataset": {"annotations": str(args.coco_annotations), "num_images": len(indices),
                           "num_available": len(source)}, "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
