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

import concurrent.futures
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from data_mix.sources.cityscapes import CLASSES, CityscapesSource, semantic_to_label_ids
from data_mix.sources.images import decode_gray, decode_rgb
from eval import cli, report
from eval import predictions as preds
from eval.metrics import cityscapes_labels as cl
from eval.metrics.cityscapes import CityscapesEvaluator, image_stats
from eval.metrics.cityscapes_files import check_label_ids, find_predictions
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


def official_color_map() -> tuple[np.ndarray, np.ndarray]:
    """(colors uint8 (K, 3), label ids (K,)): the official colors, each color's lowest label id
    (black -> unlabeled, the pole/polegroup gray -> pole)."""
    colors, ids = [], []
    for label_id in range(cl.NUM_LABEL_IDS):
        c = tuple(int(v) for v in cl.COLORS_BY_LABEL_ID[label_id])
        if c not in colors:
            colors.append(c)
            ids.append(label_id)
    return np.array(colors, np.uint8), np.array(ids, np.uint8)


def load_color_map(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(colors uint8 (K, 3), label ids (K,)) from a JSON {label name or id: color} file."""
    from tasks import colors as colorlib

    path = pathlib.Path(path)
    try:
        mapping = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--color-map file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--color-map {path}: not valid JSON: {e}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"--color-map {path}: expected a JSON object {{class name: [r, g, b]}}")
    by_name = {lab.name.lower(): lab.id for lab in cl.LABELS if lab.id >= 0}
    colors, ids = [], []
    for key, value in mapping.items():
        k = str(key).strip().lower()
        label_id = int(k) if k.isdigit() else by_name.get(k)
        if label_id is None or not 0 <= label_id < cl.NUM_LABEL_IDS:
            raise ValueError(f"--color-map {path}: key {key!r} is no Cityscapes label name or id "
                             f"(e.g. 'road', 'traffic sign', '26')")
        try:
            rgb = colorlib.parse_color(value) if isinstance(value, str) else colorlib.as_rgb(value)
        except ValueError as e:
            raise ValueError(f"--color-map {path}: {key!r}: {e}") from None
        colors.append(rgb)
        ids.append(label_id)
    return np.array(colors, np.uint8), np.array(ids, np.uint8)


def to_label_ids(pred: np.ndarray, fmt: str, color_map, max_distance: float, name: str) -> np.ndarray:
    """A prediction image -> label ids (H, W) for the evaluator (see the --help epilog)."""
    from tasks import semantic

    check_label_ids(pred, fmt, name)  # out-of-range ids, trainIds / id maps under `auto`
    if fmt == "auto":
        fmt = "color" if pred.ndim == 3 else "label"
    if fmt == "color":
        if pred.ndim != 3:
            raise ValueError(f"{name}: --pred-format color needs an RGB PNG, got shape {pred.shape}")
        colors, ids = color_map
        index = semantic.nearest_color(pred, colors, max_distance)
        return np.where(index >= 0, ids[np.maximum(index, 0)], 0).astype(np.uint8)
    if pred.ndim != 2:
        raise ValueError(f"{name}: --pred-format {fmt} needs a single-channel PNG, got shape "
                         f"{pred.shape} (RGB predictions: --pred-format color)")
    if fmt == "train":
        return cl.TRAIN_TO_LABEL_LUT[np.where(pred > 255, 255, pred).astype(np.uint8)]
    return pred


def ground_truth_members(source: CityscapesSource, i: int) -> tuple[str, str, str]:
    """(image, labelIds, instanceIds) member paths of record i (the layout in the source docs)."""
    stem = source.stems[i]  # leftImg8bit/{split}/{city}/{city}_{seq}_{frame}
    gt = "gtFine" + stem[len("leftImg8bit"):]
    return stem + "_leftImg8bit.png", gt + "_gtFine_labelIds.png", gt + "_gtFine_instanceIds.png"


def _score_one(source, i, pred_path, fmt, color_map, max_distance):
    _, label_rel, inst_rel = ground_truth_members(source, i)
    gt = decode_gray(source.labels.read(label_rel), source.labels.describe(label_rel), (np.uint8,))
    inst = decode_gray(source.labels.read(inst_rel), source.labels.describe(inst_rel))
    pred = to_label_ids(preds.read_image(pred_path), fmt, color_map, max_distance, str(pred_path))
    pred = preds.to_size(pred, gt.shape, "nearest", str(pred_path))
    stats = image_stats(pred, gt, inst, name=str(pred_path))
    single = CityscapesEvaluator()
    single.add_stats(stats)
    return stats, single.result()["miou"]


def score_folder(source: CityscapesSource, indices: Sequence[int], folder: pathlib.Path, *,
                 fmt: str = "auto", color_map=None, max_distance: float = 96.0, threads: int | None = None,
                 progress: bool = True, what: str = "") -> tuple[dict, list[dict]]:
    """Scores a predictions folder on records `indices`: (evaluator result, per-image mIoU)."""
    gts = [source.labels.describe(ground_truth_members(source, i)[1]) for i in indices]
    try:
        paths = find_predictions(gts, folder)
    except FileNotFoundError as e:
        raise preds.MissingPredictionError(f"{what or folder}: {e}") from None
    color_map = official_color_map() if color_map is None else color_map
    evaluator = CityscapesEvaluator()
    per_image = []
    threads = threads or len(os.sched_getaffinity(0))
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        jobs = pool.map(lambda ip: _score_one(source, ip[0], ip[1], fmt, color_map, max_distance),
                        zip(indices, paths, strict=True))
        bar = tqdm(jobs, total=len(paths), desc=f"score {what}", unit="img", disable=not progress)
        for i, path, (stats, miou) in zip(indices, paths, bar, strict=True):
            evaluator.add_stats(stats)
            per_image.append({"id": pathlib.PurePosixPath(source.stems[i]).name, "index": i,
                              "prediction": str(path), "miou": miou})
    return evaluator.result(), per_image


def predict_folder(args, source: CityscapesSource, indices: Sequence[int], folder: pathlib.Path) -> dict:
    """Our checkpoint's predictions as labelId PNGs under `folder`; returns how they were made."""
    from eval import from_checkpoint
    from tasks import semantic

    colors = semantic.palette(len(CLASSES))
    spec = {"colors": colors, "background": semantic.BLACK, "classes": list(CLASSES)}

    def jobs():
        for i in indices:
            prompt = semantic.render_prompt(np.random.default_rng(args.seed + i), CLASSES, colors,
                                            state_background=True, layout="json")
            stem = pathlib.PurePosixPath(source.stems[i])  # leftImg8bit/{split}/{city}/{name}
            yield from_checkpoint.Job(f"{stem.parent.name}/{stem.name}", source[i]["image"], prompt, spec)

    def write(job, labels):
        preds.write_png(folder / f"{job.key}_pred_labelIds.png", semantic_to_label_ids(labels))

    made = from_checkpoint.predict_into(args, jobs(), "semantic", write, total=len(indices))
    return {**made, "palette": colors.tolist(), "classes": list(CLASSES)}


def _worst_grid(out, name, source, per_image, fmt, color_map, max_distance, k) -> pathlib.Path:
    worst = sorted(per_image, key=lambda r: (r["miou"] if r["miou"] is not None else 2.0, r["id"]))[:k]
    rows, titles = [], []
    for r in worst:
        image_rel, label_rel, _ = ground_truth_members(source, r["index"])
        image = decode_rgb(source.images.read(image_rel), source.images.describe(image_rel))
        gt = decode_gray(source.labels.read(label_rel), source.labels.describe(label_rel), (np.uint8,))
        pred = to_label_ids(preds.read_image(r["prediction"]), fmt, color_map, max_distance, r["prediction"])
        pred = preds.to_size(pred, gt.shape, "nearest", r["prediction"])
        colors = cl.COLORS_BY_LABEL_ID
        rows.append([report.thumbnail(p) for p in (image, report.colorize(pred, colors),
                                                   report.colorize(gt, colors))])
        titles.append(f"{r['id']}\nmIoU {report.fmt(r['miou'])}")
    return report.image_grid(out / f"worst_{name}.png", rows, col_titles=["input", f"{name}", "ground truth"],
                             row_titles=titles, title=f"Cityscapes: lowest per-image mIoU ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = cli.make_parser("eval.cityscapes", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
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
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args, ("pred_format", "color_map"))
    source = CityscapesSource(args.cityscapes_root, args.split, with_instances=False)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, per_images, settings = {}, {}, {}
    for model in models:
        fmt = cli.per_model(args, "pred_format", model.name)
        cmap_path = cli.per_model(args, "color_map", model.name)
        entry = {"model": model.to_json()}
        folder = cli.prediction_path(args, model, entry,
                                  lambda folder: predict_folder(args, source, indices, folder))
        if model.kind == "checkpoint":  # written by us as labelId PNGs
            fmt, cmap_path = "label", None
        color_map = load_color_map(cmap_path) if cmap_path else official_color_map()
        result, per_image = score_folder(source, indices, folder, fmt=fmt, color_map=color_map,
                                         max_distance=args.color_max_distance, threads=args.threads,
                                         progress=not args.no_progress, what=f"model {model.name!r}")
        official = "official" if fmt in ("auto", "color") else None
        entry.update(predictions=str(folder), pred_format=fmt,
                     color_map=str(cmap_path) if cmap_path else official, result=result, per_image=per_image)
        entries[model.name] = entry
        per_images[model.name] = per_image
        settings[model.name] = (fmt, color_map)
    figures = {"Per-class IoU": report.bar_chart(
        out / "chart_class_iou.png", cl.EVAL_NAMES,
        {n: [e["result"]["classes"][c] for c in cl.EVAL_NAMES] for n, e in entries.items()},
        ylabel="IoU", title=f"Cityscapes {args.split}: per-class IoU", ylim=(0, 1))}
    if args.worst > 0:
        for name in entries:
            fmt, cmap = settings[name]
            figures[f"Worst images: {name}"] = _worst_grid(out, name, source, per_images[name], fmt, cmap,
                                                           args.color_max_distance, args.worst)
    results = [e["result"] for e in entries.values()]
    class_rows = [[c] + [report.fmt(r["classes"][c]) for r in results] for c in cl.EVAL_NAMES]
    cat_rows = [[c] + [report.fmt(r["categories"][c]) for r in results] for c in results[0]["categories"]]
    limit = f"; first {len(indices)} of {len(source)} images (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark="cityscapes", title=f"Cityscapes {args.split}: semantic segmentation (19 classes)",
        models=entries, references=references_for("cityscapes") if args.split == "val" else [],
        columns=[report.Column("miou", "mIoU"), report.Column("category_miou", "category mIoU"),
                 report.Column("miiou", "iIoU"), report.Column("category_miiou", "category iIoU")],
        intro=[f"Dataset: {args.cityscapes_root} ({len(indices)} images{limit})",
               "Protocol: cityscapesScripts 2.3.0 evalPixelLevelSemanticLabeling (labelIds; IoU = TP / "
               "(TP + FP + FN), FP excluding ignored ground truth; means skip undefined classes)"],
        sections=["## Per-class IoU\n\n" + report.markdown_table(["class"] + list(entries), class_rows),
                  "## Per-category IoU\n\n" + report.markdown_table(["category"] + list(entries), cat_rows)],
        figures=figures,
        extra={"dataset": {"root": str(args.cityscapes_root), "split": args.split, "num_images": len(indices),
                           "num_available": len(source)}, "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
