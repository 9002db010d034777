"""Image restoration (derain, desnow, denoise, low-light, ...): PSNR and SSIM on RGB.

    python -m eval.restoration --dataset-root Rain100L --kind derain --predictions DIR \\
        --baseline restormer=DIR2 --out OUT

Pairs ROOT/input/<name> (degraded) with ROOT/target/<name> (clean); each restored image is
scored against its target by `eval.metrics.RestorationEvaluator` (RGB, 8-bit, data range 255,
optional border crop; SSIM with an 11x11 Gaussian window, sigma 1.5, per channel), averaged
over images. Writes OUT/results.json, OUT/report.md (with the degraded inputs' own scores as the floor),
OUT/chart_psnr.png, OUT/chart_ssim.png and OUT/worst_<model>.png (lowest PSNR: input /
restored / target).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from data_mix.sources.paired_folders import IMAGE_EXTENSIONS, RestorationPairsSource
from eval import cli, report
from eval import predictions as preds
from eval.metrics.restoration import RestorationEvaluator
from eval.references import references_for

EPILOG = """\
dataset: ROOT/input/<name>.<ext> and ROOT/target/<name>.<ext> of one size (any of .png .jpg
  .jpeg .bmp .tif); names match without extension.
predictions (--predictions / --baseline): DIR/<name>.png (or another image extension), 8-bit
  RGB at the target size (a smaller image of the same aspect is resized bilinearly, which
  lowers its scores: restore at full size). A missing or misnamed file is an error naming the
  expected path.
checkpoint (--workdir): --kind's restoration prompt (tasks.restoration), the generated image
  resized back to the input size, written as OUT/predictions/NAME/<name>.png.
"""


def predict_folder(args, source, indices, folder: pathlib.Path) -> dict:
    """Our checkpoint's restored images as <name>.png under `folder`."""
    from eval import from_checkpoint
    from tasks import restoration

    def jobs():
        for i in indices:
            record = source[i]
            prompt = restoration.render_prompt(np.random.default_rng(args.seed + i), args.kind)
            yield from_checkpoint.Job(record["meta"]["id"], record["image"], prompt, {})

    return from_checkpoint.predict_into(
        args, jobs(), "restoration",
        lambda job, image: preds.write_png(folder / f"{job.key}.png", image), total=len(indices))


def _worst_grid(out, name, source, folder, per_image, k):
    worst = sorted(per_image, key=lambda r: (r["psnr"] if r["psnr"] is not None else np.inf, r["name"]))[:k]
    rows, titles = [], []
    for r in worst:
        record = source[r["index"]]
        path = folder.path(r["name"])
        restored = preds.to_size(preds.read_color(path), record["target"].shape[:2], "rgb", str(path))
        rows.append([report.thumbnail(p) for p in (record["image"], restored, record["target"])])
        titles.append(f"{r['name']}\nPSNR {report.fmt(r['psnr'], 2)} dB, SSIM {report.fmt(r['ssim'])}")
    return report.image_grid(out / f"worst_{name}.png", rows, col_titles=["input", name, "target"],
                             row_titles=titles, title=f"Restoration: lowest PSNR ({name})")


def main(argv: Sequence[str] | None = None) -> dict:
    from tasks.restoration import KINDS

    parser = cli.make_parser("eval.restoration", __doc__.split("\n\n")[0], EPILOG)
    d = parser.add_argument_group("dataset")
    d.add_argument("--dataset-root", type=pathlib.Path, required=True, help="folder with input/ and target/")
    d.add_argument("--inputs", default="input", help="degraded-image sub-folder (default input)")
    d.add_argument("--targets", default="target", help="clean-image sub-folder (default target)")
    d.add_argument("--kind", choices=KINDS, default="derain",
                   help="the degradation, named in our prompts (default derain)")
    d.add_argument("--crop", type=int, default=0, help="border pixels removed before scoring (default 0)")
    args = parser.parse_args(argv)
    models = cli.models_from_args(parser, args)
    source = RestorationPairsSource(args.dataset_root, inputs=args.inputs, targets=args.targets,
                                    kind=args.kind)
    indices = cli.limit_indices(len(source), args.limit)
    out = args.out
    entries, folders, evaluators = {}, {}, {}
    for model in models:
        entries[model.name] = {"model": model.to_json()}
        folder = cli.prediction_path(args, model, entries[model.name],
                                  lambda folder: predict_folder(args, source, indices, folder))
        folders[model.name] = preds.PredictionFolder(folder, IMAGE_EXTENSIONS, f"model {model.name!r}")
        evaluators[model.name] = RestorationEvaluator(args.crop)
    index_of = {}
    floor = RestorationEvaluator(args.crop)  # the degraded inputs: what every model should beat
    for i in cli.progress(indices, args, desc="score restoration", unit="img"):
        record = source[i]
        key, target = record["meta"]["id"], record["target"]
        index_of[key] = i
        floor.add(record["image"], target, name=key)
        for name, folder in folders.items():
            path = folder.path(key)
            restored = preds.to_size(preds.read_color(path), target.shape[:2], "rgb", str(path))
            evaluators[name].add(restored, target, name=key)
    figures = {}
    for name, entry in entries.items():
        result = evaluators[name].result(per_image=True)
        for r in result["per_image"]:
            r["index"] = index_of[r["name"]]
        entry.update(predictions=str(folders[name].root), result=result, unused_files=folders[name].unused())
        if args.worst > 0:
            figures[f"Worst images: {name}"] = _worst_grid(out, name, source, folders[name],
                                                           result["per_image"], args.worst)
    shown = {**entries, "input (no restoration)": {"model": {"kind": "input"}, "result": floor.result(),
                                                   "source": "the degraded inputs"}}
    psnr = {n: [e["result"]["psnr"]] for n, e in shown.items()}
    ssim = {n: [e["result"]["ssim"]] for n, e in shown.items()}
    figures = {"PSNR": report.bar_chart(out / "chart_psnr.png", ["PSNR"], psnr, ylabel="dB",
                                        title="PSNR (RGB)"),
               "SSIM": report.bar_chart(out / "chart_ssim.png", ["SSIM"], ssim, ylabel="SSIM",
                                        title="SSIM (RGB)", ylim=(0, 1)), **figures}
    limit = f"; first {len(indices)} of {len(source)} (--limit)" if args.limit else ""
    report.write_report(
        out, benchmark=f"restoration/{args.kind}", title=f"Restoration ({args.kind}): {source.dataset}",
        models=shown, references=references_for(f"restoration/{args.kind}"),
        columns=[report.Column("psnr", "PSNR (dB)", 2), report.Column("ssim", "SSIM", 4),
                 report.Column("num_images", "images", 0), report.Column("num_identical", "identical", 0)],
        intro=[f"Dataset: {args.dataset_root} ({len(indices)} pairs{limit})",
               f"Protocol: {floor.result()['protocol']}; means over images (PSNR over non-identical pairs)"],
        figures=figures,
        extra={"dataset": {"root": str(args.dataset_root), "kind": args.kind, "num_images": len(indices),
                           "num_available": len(source)}, "run": cli.run_info(args, argv)})
    return entries


if __name__ == "__main__":
    cli.run(main)
