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

import csv
import json
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from data_mix.sources.paired_folders import IMAGE_EXTENSIONS, BinaryMaskFolderSource
from eval import cli, report
from eval import predictions as preds
from eval.metrics.binary import BinaryMaskEvaluator, strata
from eval.references import references_for

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


def load_reference_scores(path: pathlib.Path) -> dict[str, float]:
    """{case: score} from a JSON object or a two-column CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"--reference-scores file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--reference-scores {path}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"--reference-scores {path}: expected a JSON object {{case: score}}")
        return {str(k): float(v) for k, v in data.items()}
    scores = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        try:
            scores[row[0].strip()] = float(row[1])
        except (IndexError, ValueError):
            if n == 1:
                continue  # header
            raise ValueError(f"--reference-scores {path}:{n}: expected '<name>,<score>', got {row}") from None
    return scores


def predict_folder(args, source, indices, folder: pathlib.Path) -> dict:
    """Our checkpoint's masks as <name>.png under `folder`."""
    from eval import from_checkpoint
    from tasks import binary

    def jobs():
        for i in indices:
            record = source[i]
            prompt = binary.render_prompt(np.random.default_rng(args.seed + i), args.target)
            yield from_checkpoint.Job(record["meta"]["id"], record["image"], prompt, {})

    return from_checkpoint.predict_into(
        args, jobs(), "binary", lambda job, mask: preds.write_mask(folder / f"{job.key}.png", mask),
        total=len(indices))


def _worst_grid(out, name, source, folder, cases, index_of, k):
    worst = sorted(cases.items(), key=lambda kv: (kv[1]["dice"], kv[0]))[:k]
    rows, titles = [], []
    for case, scores in worst:
        record = source[index_of[case]]
        path = folder.path(case)
        pred = preds.to_size(preds.read_mask(path), record["mask"].shape, "nearest", str(path))
        image = record["image"]
        rows.append([report.thumbnail(p) for p in (image, report.overlay(image, pred, (255, 40, 40)),
                                                   report.overlay(image, record["mask"], (40, 220, 40)))])
        titles.append(f"{case}\nDice {report.fmt(scores['dice'], 1)}, HD95 {report.fmt(scores['hd95'], 1)}")
    return report.image_grid(out / f"worst_{name}.png", rows, col_titles=["input", name, "ground truth"],
                             row_titles=titles, title=f"Binary masks: lowest Dice ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = cli.make_parser("eval.binary_masks", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
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
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args)
    if args.reference_scores and args.reference_model:
        parser.error("give --reference-scores or --reference-model, not both")
    if args.reference_model and args.reference_model not in [m.name for m in models]:
        parser.error(f"--reference-model {args.reference_model!r} is not one of the scored models")
    source = BinaryMaskFolderSource(args.dataset_root, images=args.images, masks=args.masks,
                                    mask_suffix=args.mask_suffix, target=args.target)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, folders, evaluators = {}, {}, {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        folder = cli.prediction_path(args, model, entries[model.name],
                                  lambda folder: predict_folder(args, source, indices, folder))
        folders[model.name] = preds.PredictionFolder(folder, IMAGE_EXTENSIONS, f"model {model.name!r}")
        evaluators[model.name] = BinaryMaskEvaluator(args.empty_hd95)
    index_of = {}
    for i in cli.progress(indices, args, desc="score masks", unit="case"):
        record = source[i]
        case, gt = record["meta"]["id"], record["mask"]
        index_of[case] = i
        for name, folder in folders.items():
            path = folder.path(case)
            pred = preds.to_size(preds.read_mask(path), gt.shape, "nearest", str(path))
            evaluators[name].add(case, pred, gt)
    groups, strata_info = None, None
    if args.reference_scores or args.reference_model:
        if args.reference_scores:
            reference = load_reference_scores(args.reference_scores)
            unknown = sorted(set(reference) - set(index_of))
            if unknown and not args.limit:
                raise ValueError(f"--reference-scores {args.reference_scores} names cases not in the "
                                 f"dataset: {unknown[:5]}")
            missing = sorted(set(index_of) - set(reference))
            if missing:
                raise ValueError(f"--reference-scores {args.reference_scores} has no score for cases "
                                 f"{missing[:5]} ({len(missing)} in all)")
            reference = {k: v for k, v in reference.items() if k in index_of}
        else:
            cases = evaluators[args.reference_model].cases
            reference = {k: v[args.strata_metric] for k, v in cases.items()}
        groups = strata({k: v for k, v in reference.items() if not math.isnan(v)}, args.strata_fraction,
                        higher_is_better=args.strata_metric == "dice")
        strata_info = {"reference": str(args.reference_scores or args.reference_model),
                       "metric": args.strata_metric, "fraction": args.strata_fraction, "cases": groups}
    figures = {}
    for name, entry in entries.items():
        result = evaluators[name].result(groups, per_case=True)
        entry.update(predictions=str(folders[name].root), result=result, unused_files=folders[name].unused())
        if args.worst > 0:
            figures[f"Worst cases: {name}"] = _worst_grid(out, name, source, folders[name],
                                                          evaluators[name].cases, index_of, args.worst)
    parts = ["all"] + (["easy", "hard"] if groups else [])

    def series(metric):
        return {n: [e["result"][p][metric] for p in parts] for n, e in entries.items()}
    figures = {"Dice": report.bar_chart(out / "chart_dice.png", parts, series("dice"), ylabel="Dice (%)",
                                        title="Dice", ylim=(0, 100)),
               "HD95": report.bar_chart(out / "chart_hd95.png", parts, series("hd95"), ylabel="HD95 (pixels)",
                                        title="HD95"), **figures}
    columns = [report.Column(f"{p}.{m}", f"{p} {label}", 2) for p in parts
               for m, label in (("dice", "Dice %"), ("hd95", "HD95 px"))]
    limit = f"; first {len(indices)} of {len(source)} cases (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark="binary_masks", title=f"Binary segmentation: {source.dataset}", models=entries,
        references=references_for("binary_masks"),
        columns=columns + [report.Column("all.num_cases", "cases", 0)],
        intro=[f"Dataset: {args.dataset_root} ({len(indices)} cases{limit})",
               f"Protocol: Dice in %, HD95 in pixels (MedPy); one empty mask: HD95 = {args.empty_hd95}",
               ("Strata: the {:g} % best (easy) and worst (hard) cases of {} by {}".format(
                   100 * args.strata_fraction, strata_info["reference"], args.strata_metric)
                if strata_info else "Strata: none (give --reference-scores or --reference-model)")],
        figures=figures,
        extra={"dataset": {"root": str(args.dataset_root), "num_cases": len(indices),
                           "num_available": len(source)},
               "strata": strata_info, "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
