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
from collections.abc import Sequence

import numpy as np

from eval import cli, report
from eval import predictions as preds
from eval.metrics.referring import THRESHOLDS, ReferringEvaluator
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


class MaskPredictions:
    """Masks by key from a folder of PNGs or a JSON file of RLEs."""

    def __init__(self, path: pathlib.Path, what: str):
        self.path, self.what = pathlib.Path(path), what
        if self.path.is_file():
            self.rles, self.folder = preds.read_rle_json(self.path), None
        else:
            self.rles, self.folder = None, preds.PredictionFolder(self.path, (".png",), what)
        self._used: set[str] = set()

    def mask(self, key: str) -> np.ndarray:
        if self.folder is not None:
            return preds.read_mask(self.folder.path(key))
        if key not in self.rles:
            near = [k for k in self.rles if k.split("_")[0] == key.split("_")[0]][:3]
            raise preds.MissingPredictionError(
                f"{self.what}: no prediction for {key!r}: expected key {key!r} in {self.path}"
                + (f" (found {', '.join(near)})" if near else f" ({len(self.rles)} keys present)"))
        self._used.add(key)
        return preds.decode_rle(self.rles[key])

    def unused(self) -> list[str]:
        return self.folder.unused() if self.folder is not None else sorted(set(self.rles) - self._used)


def expressions(record) -> list[tuple[str, str, np.ndarray]]:
    """(key, expression, ground-truth mask) of every expression of a ref record."""
    ref_id = record["meta"]["ref_ids"][0]
    target = record["referring"][0]
    return [(f"{ref_id}_{k}", text, target["mask"]) for k, text in enumerate(target["expressions"])]


def predict_folder(args, source, indices, folder: pathlib.Path) -> dict:
    """Our checkpoint's masks as <ref_id>_<k>.png under `folder`."""
    from eval import from_checkpoint
    from tasks import referring

    spec = {"colors": np.array([TARGET_COLOR], np.uint8), "background": referring.BLACK}

    def jobs():
        n = 0
        for i in indices:
            record = source[i]
            for key, text, _ in expressions(record):
                prompt = referring.render_prompt(np.random.default_rng(args.seed + n), [text], spec["colors"],
                                                 state_background=True)
                n += 1
                yield from_checkpoint.Job(key, record["image"], prompt, spec)

    return from_checkpoint.predict_into(
        args, jobs(), "referring",
        lambda job, masks: preds.write_mask(folder / f"{job.key}.png", masks[0]))


def _worst_grid(out, name, source, masks, per_expression, k):
    worst = sorted(per_expression, key=lambda r: (r["iou"], r["name"]))[:k]
    rows, titles = [], []
    for r in worst:
        record = source[r["index"]]
        gt = record["referring"][0]["mask"]
        pred = preds.to_size(masks.mask(r["name"]), gt.shape, "nearest", r["name"])
        image = record["image"]
        rows.append([report.thumbnail(p) for p in (image, report.overlay(image, pred, (255, 40, 40)),
                                                   report.overlay(image, gt, (40, 220, 40)))])
        text = r["expression"] if len(r["expression"]) < 60 else r["expression"][:57] + "..."
        titles.append(f"{r['name']}: {text}\nIoU {report.fmt(r['iou'])}")
    return report.image_grid(out / f"worst_{name}.png", rows, col_titles=["input", name, "ground truth"],
                             row_titles=titles, title=f"Referring segmentation: lowest IoU ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    from data_mix.sources import RefCOCOSource

    parser = cli.make_parser("eval.refcoco", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
    d.add_argument("--refcoco-root", type=pathlib.Path,
                   help="folder with refcocog/refs(umd).p, refcocog/instances.json, train2014/")
    d.add_argument("--refs-file", type=pathlib.Path)
    d.add_argument("--instances-file", type=pathlib.Path)
    d.add_argument("--image-dir", type=pathlib.Path)
    d.add_argument("--split", default="val", choices=("val", "test", "train", "testA", "testB"),
                   help="refer's split semantics: testA / testB for RefCOCO / RefCOCO+ (refs(unc).p)")
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args)
    root = args.refcoco_root
    paths = {"refs_file": ("refcocog", "refs(umd).p"), "instances_file": ("refcocog", "instances.json"),
             "image_dir": ("train2014",)}
    for dest, parts in paths.items():
        if getattr(args, dest) is None:
            if root is None:
                parser.error(f"give --refcoco-root or --{dest.replace('_', '-')}")
            setattr(args, dest, root.joinpath(*parts))
    source = RefCOCOSource(args.refs_file, args.instances_file, args.image_dir, args.split)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, masks, evaluators = {}, {}, {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        path = cli.prediction_path(args, model, entries[model.name],
                                  lambda folder: predict_folder(args, source, indices, folder))
        masks[model.name] = MaskPredictions(path, f"model {model.name!r}")
        evaluators[model.name] = ReferringEvaluator()
    info = {}
    for i in cli.progress(indices, args, desc=f"score refcocog {args.split}", unit="ref"):
        for key, text, gt in expressions(source[i]):
            info[key] = (i, text)
            for name, m in masks.items():
                evaluators[name].add(preds.to_size(m.mask(key), gt.shape, "nearest", key), gt, name=key)
    figures = {}
    for name, entry in entries.items():
        result = evaluators[name].result(per_expression=True)
        for r in result["per_expression"]:
            r["index"], r["expression"] = info[r["name"]]
        entry.update(predictions=str(masks[name].path), result=result, unused=masks[name].unused())
        if args.worst > 0 and result["per_expression"]:
            figures[f"Worst expressions: {name}"] = _worst_grid(out, name, source, masks[name],
                                                                result["per_expression"], args.worst)
    refs = references_for("refcocog_umd_val") if args.split == "val" else []
    groups = ["cIoU", "gIoU"] + [f"P@{t:g}" for t in THRESHOLDS]

    def scores(result):
        precision = [result["precision"][f"{t:g}"] for t in THRESHOLDS]
        return [result["ciou"], result["giou"]] + [None if p is None else p / 100 for p in precision]
    series = {n: scores(e["result"]) for n, e in entries.items()}
    for r in refs:
        paper = [r.metrics.get("ciou"), r.metrics.get("giou")]
        series[f"{r.model} (paper)"] = paper + [None] * len(THRESHOLDS)
    figures = {"Scores": report.bar_chart(out / "chart_scores.png", groups, series, ylabel="fraction",
                                          title=f"RefCOCOg {args.split}", ylim=(0, 1)), **figures}
    limit = f"; first {len(indices)} of {len(source)} objects (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark=f"refcocog_umd_{args.split}", models=entries, references=refs,
        title=f"Referring segmentation: RefCOCOg (UMD) {args.split}",
        columns=[report.Column("ciou", "cIoU"), report.Column("giou", "gIoU")]
        + [report.Column(("precision", f"{t:g}"), f"P@{t:g} (%)", 1) for t in THRESHOLDS]
        + [report.Column("num_expressions", "expressions", 0)],
        intro=[f"Dataset: {args.refs_file} ({len(indices)} objects{limit})",
               "Protocol: one sample per expression; cIoU = sum of intersections / sum of unions; "
               "gIoU = mean per-expression IoU; P@t = % of expressions with IoU >= t"],
        figures=figures,
        extra={"dataset": {"refs_file": str(args.refs_file), "split": args.split, "num_objects": len(indices),
                           "num_available": len(source)}, "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
