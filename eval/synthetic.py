"""Synthetic scenes, held-out split: the demo's benchmark (depth, normals, semantic, instance).

    python -m eval.synthetic --task depth --num-scenes 64 --workdir demo_out/run --out OUT \\
        --baseline constant=DIR --baseline ceiling=DIR2

Scene i of the `--split` split (never trained on: the training split draws other scenes) makes
one example per task with the training builders (`data_mix.builders`, the demo's options),
its example rng seeded [--example-seed, 7, task index, i]. Ground truth (`--truth`): the
renderer's exact labels (`renderer`, the demo's) or the example's target image decoded by the
codec (`target`, what the trainer's `decoded` evaluator scores against). Scores come from
`eval.metrics.for_task(task)`, named by the metric table (`eval.metrics.table`). Writes
OUT/results.json, OUT/report.md, OUT/chart_metrics.png and OUT/worst_<model>.png.
"""

from __future__ import annotations

import json

import numpy as np

import tasks as codecs
from eval import cli, report, runner
from eval import predictions as preds
from eval.metrics import for_task, table
from tasks import instance as instance_codec

TASKS = ("depth", "normals", "semantic", "instance")
SEED_STREAM = 7  # rng stream of the examples' prompt phrasings (the demo's)
EPILOG = """\
predictions (--predictions / --baseline): one file per scene, named by its 4-digit index
  (0000, 0001, ...), at the scene size:
    depth     DIR/<i>.npy float32 (H, W) metres (+inf: sky)
    normals   DIR/<i>.npy float32 (H, W, 3) unit vectors (x right, y up, z toward the camera)
    semantic  DIR/<i>.png single-channel class indices into the scene classes, 255 = none
    instance  DIR/<i>.json {"size": [H, W], "scores": [...], "masks": [<COCO RLE>, ...]} (the
              instances of the class the scene's prompt names)
checkpoint (--workdir): the example's own prompt, decoded by the task codec with the example's
  decode spec, written in the format above.
"""


def write_instances(path, found) -> None:
    rles = instance_codec.to_rle(found.masks) if len(found.masks) else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"size": list(found.masks.shape[1:]), "scores": [float(s) for s in found.scores],
                                "masks": rles}))


def read_instances(path):
    data = json.loads(path.read_text())
    masks = [preds.decode_rle(m) for m in data["masks"]]
    shape = tuple(data["size"])
    return instance_codec.Instances(np.array(masks, bool).reshape(len(masks), *shape),
                                     np.asarray(data["scores"], np.float32), np.zeros((len(masks), 3), np.uint8))


WRITERS = {"depth": (".npy", preds.write_npy), "normals": (".npy", preds.write_npy),
           "semantic": (".png", lambda p, lab: preds.write_png(p, np.where(lab < 0, 255, lab).astype(np.uint8))),
           "instance": (".json", write_instances)}
READERS = {"depth": preds.read_depth, "normals": preds.read_normals,
           "semantic": lambda p: np.where((lab := preds.read_label_map(p).astype(np.int32)) == 255, -1, lab),
           "instance": read_instances}
WORST = {"depth": ("abs_rel", True, "AbsRel"), "normals": ("mean", True, "mean angle"),
         "semantic": ("pixel_acc", False, "pixel accuracy")}


def build_example(task: str, i: int, record: dict, seed: int = 0, builders: str = "demo") -> dict:
    """The task's example of scene i, built as the demo's held-out examples are: the training
    builder with the demo's options, rng [seed, 7, task index, i]."""
    from data_mix import builders as lib
    from data_mix import mixtures

    options = mixtures.DEMO_BUILDERS[task] if builders == "demo" else {}
    return lib.build(task, lib.select_fields(task, record),
                     np.random.default_rng([seed, SEED_STREAM, TASKS.index(task), i]), **options)


def decode_spec(task: str, example: dict, instance_min_area: int = 6) -> dict:
    """The codec arguments decoding the example's images (its spec; instances: the min area)."""
    return {**example["meta"]["spec"], **({"min_area": instance_min_area} if task == "instance" else {})}


class Synthetic(runner.Benchmark):
    module, benchmark, unit = "eval.synthetic", "synthetic/{args.task}", "scenes"
    title = "Synthetic scenes ({args.split} split): {args.task}"

    @staticmethod
    def add_options(d) -> None:
        d.add_argument("--task", required=True, choices=TASKS)
        d.add_argument("--num-scenes", type=int, default=64, help="scenes scored (default 64)")
        d.add_argument("--split", default="test", help="scene split (default test: never trained on)")
        d.add_argument("--resolution", type=int, default=32, help="scene size in pixels (default 32)")
        d.add_argument("--scene-seed", type=int, default=0, help="the scene source's seed (default 0)")
        d.add_argument("--example-seed", type=int, help="seed of the examples' rng (default --scene-seed)")
        d.add_argument("--builders", choices=("demo", "plain"), default="demo",
                       help="builder options: the demo's (fixed colors, rainbow depth) or the defaults")
        d.add_argument("--truth", choices=("renderer", "target"), default="renderer",
                       help="ground truth: the renderer's exact labels or the decoded target image")
        d.add_argument("--instance-min-area", type=int, default=6,
                       help="pixels an instance needs when decoded (default 6, for 32x32 scenes)")

    def open(self):
        from data_mix.synthetic import SyntheticScenes

        a = self.args
        self.task, self.extensions, self.write_as = a.task, (WRITERS[a.task][0],), WRITERS[a.task]
        self.worst_key, self.worst_highest, self.worst_label = WORST.get(a.task, ("", False, ""))
        self.grid_columns = ("input", "{name}", "ground truth")
        return SyntheticScenes(seed=a.scene_seed, size=a.resolution, num_records=a.num_scenes, split=a.split)

    def example(self, i: int, record) -> dict:
        a = self.args
        return build_example(a.task, i, record, a.scene_seed if a.example_seed is None else a.example_seed,
                             a.builders)

    def spec(self, example) -> dict:
        return decode_spec(self.task, example, self.args.instance_min_area)

    def items(self, i, record):
        return [runner.Item(f"{i:04d}", i)]

    def load(self, i):
        record = self.source[i]
        return {**record, "example": self.example(i, record)}

    def truth(self, item, record):
        """The ground truth of the scene's example (instance: (masks (K, H, W), class))."""
        example, spec = record["example"], self.spec(record["example"])
        if self.args.truth == "target":
            decoded = codecs.get(self.task).decode(example["target"], **spec)
            return (decoded.masks, spec["target"]) if self.task == "instance" else decoded
        if self.task != "instance":
            return record[self.task]
        masks, names = np.asarray(record["instance_masks"], bool), np.asarray(record["instance_classes"], object)
        keep = (names == spec["target"]) & (masks.sum((1, 2)) >= 4)  # the builder's min_pixels
        return masks[keep], spec["target"]

    def job(self, item, record, n):
        example = self.example(item.index, record)
        return example["prompt"], self.spec(example)

    def gt_size(self, gt):
        return (gt[0].shape[1:] if self.task == "instance" else gt.shape[:2])

    def read(self, model, item, gt):
        path = self.readers[model.name].path(item.key)
        pred = READERS[self.task](path)
        return pred if self.task == "instance" else preds.to_size(pred, self.gt_size(gt), "nearest", str(path))

    def evaluator(self, model):
        return for_task(self.task)

    def accumulate(self, ev, item, pred, gt):
        if self.task == "instance":
            ev.add(pred, gt[0], name=item.key, category=gt[1])
            return {"name": item.key}
        if self.task == "semantic":
            ev.add(pred, gt, name=item.key)
            labelled = gt >= 0
            return {"name": item.key, "pixel_acc": float((pred[labelled] == gt[labelled]).mean())
                    if labelled.any() else None}
        return ev.add(pred, gt, name=item.key) or {}

    def result(self, model, ev, records):
        result = ev.result()
        return {**result, "metrics_table": table.summary(self.task, result)}

    def panels(self, model, item, r, record, gt, pred):
        codec, spec = codecs.get(self.task), self.spec(record["example"])
        if self.task == "semantic":
            colors = spec["colors"]
            return [record["image"], codec.encode(pred, colors), codec.encode(gt, colors)]
        return [record["image"], codec.encode(np.asarray(pred, np.float32)), codec.encode(gt)]

    def report_columns(self):
        return [report.Column(("metrics_table", m.key), m.describe(), m.digits)
                for m in table.headline(self.task) + table.extra(self.task)]

    def charts(self, entries, refs):
        keys = [m.key for m in table.headline(self.task) + table.extra(self.task)]
        return {"Metrics": self.chart("chart_metrics.png", keys, lambda r: [r["metrics_table"].get(k) for k in keys],
                                      entries, ylabel="value", title=f"synthetic {self.task}")}

    def dataset(self):
        a = self.args
        return f"synthetic scenes, {a.split} split, seed {a.scene_seed}, {a.resolution} px", \
            {"split": a.split, "scene_seed": a.scene_seed, "resolution": a.resolution, "num_scenes": len(self.indices)}

    def protocol(self, entries):
        return [f"Protocol ({m.label}): {m.protocol}" for m in table.headline(self.task)] + \
            [f"Ground truth: {'the renderer' if self.args.truth == 'renderer' else 'the decoded target image'}"]


main = runner.main_of(Synthetic, __doc__, EPILOG)


if __name__ == "__main__":
    cli.run(main)
