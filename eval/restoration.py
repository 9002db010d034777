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

import numpy as np

from data_mix.sources.paired_folders import IMAGE_EXTENSIONS, RestorationPairsSource
from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task

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



class Restoration(runner.Benchmark):
    module, task, extensions, resize = "eval.restoration", "restoration", IMAGE_EXTENSIONS, "rgb"
    write_as, read_as = (".png", preds.write_png), preds.read_color
    worst_key, worst_label, worst_digits = "psnr", "PSNR", 2
    grid_columns, grid_title = ("input", "{name}", "target"), "Restoration: lowest PSNR ({name})"
    benchmark, title, unit = "restoration/{args.kind}", "Restoration ({args.kind}): {source.dataset}", "pairs"
    dataset_text, dataset_info = "{args.dataset_root}", {"root": "dataset_root", "kind": "kind"}
    reference_key = benchmark
    columns = [report.Column("psnr", "PSNR (dB)", 2), report.Column("ssim", "SSIM", 4),
               report.Column("num_images", "images", 0), report.Column("num_identical", "identical", 0)]

    @staticmethod
    def add_options(d) -> None:
        from tasks.restoration import KINDS

        d.add_argument("--dataset-root", type=pathlib.Path, required=True, help="folder with input/ and target/")
        d.add_argument("--inputs", default="input", help="degraded-image sub-folder (default input)")
        d.add_argument("--targets", default="target", help="clean-image sub-folder (default target)")
        d.add_argument("--kind", choices=KINDS, default="derain",
                       help="the degradation, named in our prompts (default derain)")
        d.add_argument("--crop", type=int, default=0, help="border pixels removed before scoring (default 0)")

    def open(self):
        a = self.args
        self.floor = for_task("restoration", crop=a.crop)  # the degraded inputs: what every model should beat
        return RestorationPairsSource(a.dataset_root, inputs=a.inputs, targets=a.targets, kind=a.kind)

    def truth(self, item, record):
        return record  # the target, and the degraded input for the floor

    def gt_size(self, record):
        return record["target"].shape[:2]

    def accumulate(self, ev, item, pred, record):
        if ev is self.first:
            self.floor.add(record["image"], record["target"], name=item.key)
        return ev.add(pred, record["target"], name=item.key)

    def job(self, item, record, n):
        from tasks import restoration

        return restoration.render_prompt(np.random.default_rng(self.args.seed + n), self.args.kind), {}

    def evaluator(self, model):
        ev = for_task("restoration", crop=self.args.crop)
        self.first = getattr(self, "first", ev)
        return ev

    def result(self, model, ev, records):
        return ev.result(per_image=True)

    def panels(self, model, item, r, record, gt, pred):
        return [record["image"], pred, record["target"]]

    def row_title(self, item, r):
        return super().row_title(item, r) + f" dB, SSIM {report.fmt(r['ssim'])}"

    def shown(self, entries):
        return {**entries, "input (no restoration)": {"model": {"kind": "input"}, "result": self.floor.result(),
                                                      "source": "the degraded inputs"}}

    def charts(self, entries, refs):
        return {"PSNR": self.chart("chart_psnr.png", ["PSNR"], lambda r: [r["psnr"]], self.shown(entries),
                                   ylabel="dB", title="PSNR (RGB)"),
                "SSIM": self.chart("chart_ssim.png", ["SSIM"], lambda r: [r["ssim"]], self.shown(entries),
                                   ylabel="SSIM", title="SSIM (RGB)", ylim=(0, 1))}

    def protocol(self, entries):
        return [f"Protocol: {self.floor.result()['protocol']}; means over images (PSNR over non-identical pairs)"]



main = runner.main_of(Restoration, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
