"""One evaluation path: the metric table and `for_task`, strict JSON, unused prediction files,
inf in depth alignment, the instance decoder's deterministic order, and the same numbers from
the trainer's `decoded` evaluator and the benchmark runner on the same examples."""

import json

import cv2
import numpy as np
import pytest

from eval import report
from eval.metrics import for_task, jsonio, table
from eval.metrics.depth import DepthEvaluator, align
from tasks import instance


def test_table_names_every_headline_metric_and_for_task_scores_it():
    for task in ("depth", "normals", "semantic", "instance", "referring", "binary", "restoration",
                 "generation"):
        assert table.headline(task), task
        assert for_task(task) is not None
    m = table.METRICS["abs_rel"]
    assert m.describe() == "AbsRel (lower is better)" and m.direction == "lower"
    assert report.Column.of(m).key == ("metrics", "abs_rel")
    ev = for_task("semantic")
    ev.add(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, -1]]))
    assert table.summary("semantic", ev.result()) == pytest.approx({"miou": 0.5, "pixel_acc": 2 / 3})
    with pytest.raises(KeyError, match="no evaluator for task 'sound'"):
        for_task("sound")


def test_strict_json_counts_nonfinite(tmp_path):
    found = []
    out = jsonio.jsonable({"a": float("nan"), "b": [np.float32(np.inf), 1], "c": np.int64(3)}, found)
    assert out == {"a": None, "b": [None, 1], "c": 3} and found == ["a", "b[0]"]
    path = jsonio.write_json(tmp_path / "x.json", {"v": -np.inf})
    assert "Infinity" not in path.read_text() and json.loads(path.read_text()) == {"v": None}
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n\n{"step": 2}\n')
    assert jsonio.read_jsonl(tmp_path / "m.jsonl") == [{"step": 1}, {"step": 2}]
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\n{"st')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        jsonio.read_jsonl(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("method", ["least_squares", "least_squares_disparity", "median"])
def test_alignment_leaves_inf_out_of_the_fit(method):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, (8, 8))
    pred = 1.0 / gt if method == "least_squares_disparity" else 0.5 * gt + (0.2 if method != "median" else 0)
    pred = pred.astype(np.float32)
    pred[2, 3] = np.inf  # inside the valid set
    valid = np.ones(gt.shape, bool)
    aligned, params = align(pred, gt, valid, method)  # used to raise LinAlgError (SVD did not converge)
    finite = np.isfinite(pred)
    np.testing.assert_allclose(aligned[finite], gt[finite], rtol=1e-5)
    assert np.isinf(aligned[2, 3]) if method != "least_squares_disparity" else aligned[2, 3] == 0
    ev = DepthEvaluator("scannet", method)
    record = ev.add(pred, gt, name="x")
    assert record["num_pixels"] == 64 and np.isfinite(record["abs_rel"])


def test_instance_decoder_order_is_deterministic_for_tied_scores():
    """Two equal squares of two colors: the same scores, so the order is by position (the
    first pixel in raster order), whichever color each square has."""
    orders = []
    for colors in (((255, 0, 0), (0, 255, 0)), ((0, 255, 0), (255, 0, 0))):
        rgb = np.zeros((32, 32, 3), np.uint8)
        rgb[4:12, 2:10] = colors[0]
        rgb[4:12, 20:28] = colors[1]
        found = instance.decode(rgb, background=(0, 0, 0))
        assert len(found.masks) == 2 and found.scores[0] == found.scores[1]
        orders.append([int(np.argwhere(m)[0, 1]) for m in found.masks])
    assert orders == [[2, 20], [2, 20]]


def test_unused_prediction_files_are_listed_for_every_benchmark(tmp_path):
    from eval import restoration

    for folder in ("ds/input", "ds/target", "pred"):
        (tmp_path / folder).mkdir(parents=True)
    image = np.full((12, 12, 3), 90, np.uint8)
    for name in ("a", "b"):
        for folder in ("ds/input", "ds/target", "pred"):
            cv2.imwrite(str(tmp_path / folder / f"{name}.png"), image)
    cv2.imwrite(str(tmp_path / "pred" / "stray.png"), image)
    entries = restoration.main(["--dataset-root", str(tmp_path / "ds"), "--predictions", str(tmp_path / "pred"),
                                "--out", str(tmp_path / "out"), "--worst", "0", "--no-progress"])
    assert entries["pred"]["unused_files"] == ["stray"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["models"]["pred"]["unused_files"] == ["stray"] and saved["nonfinite_values"]["count"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["depth", "normals", "semantic", "instance"])
def test_decoded_evaluator_and_benchmark_runner_agree(tiny_workdir, tmp_path, task):
    """The trainer's `decoded` evaluator and `python -m eval.synthetic --truth target` (the
    runner: checkpoint -> predictions folder -> files read back -> for_task) on the same four
    examples give the same numbers under the same names."""
    from data_mix.synthetic import SyntheticScenes
    from eval import synthetic
    from vision_banana import evaluators
    from vision_banana.predict import Predictor

    n = 4
    args = ["--task", task, "--num-scenes", str(n), "--resolution", "16", "--truth", "target"]
    entries = synthetic.main(args + ["--workdir", str(tiny_workdir), "--name", "tiny", "--batch-size", str(n),
                                     "--out", str(tmp_path / "bench"), "--worst", "1", "--no-progress"])
    from_runner = entries["tiny"]["result"]["metrics_table"]
    assert from_runner and set(from_runner) >= {m.key for m in table.headline(task) if m.key != "hd95"}
    # The same examples, as a held-out batch of the trainer.
    scenes = SyntheticScenes(seed=0, size=16, num_records=n, split="test")
    examples = [synthetic.build_example(task, i, scenes[i]) for i in range(n)]
    predictor = Predictor.from_workdir(tiny_workdir)
    batch = predictor.make_batch(np.stack([e["image"] for e in examples]), [e["prompt"] for e in examples])
    batch["target"] = np.stack([e["target"] for e in examples])
    held = evaluators.HeldOut(batch, [e["prompt"] for e in examples], [task] * n,
                              [{"spec": synthetic.decode_spec(task, e)} for e in examples])
    ctx = evaluators.EvalContext(0, tmp_path, predictor, None, [held], True)
    from_trainer = dict(evaluators.Decoded({"skip_tasks": ()}, None, None, None).run(ctx))
    assert from_trainer == pytest.approx({f"{task}/{k}": v for k, v in from_runner.items()}, rel=1e-6, abs=1e-9)
