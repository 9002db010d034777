"""Cityscapes metric internals: label table, hand-computed scores, file handling, errors."""

import json
import math
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from eval.metrics import cityscapes_labels as cl
from eval.metrics import cityscapes_synthetic as synth
from eval.metrics.cityscapes import CityscapesEvaluator
from eval.metrics.cityscapes_files import evaluate_files, find_predictions, instance_path_for, read_label_png

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_label_views_equal_cityscapesscripts():
    # The table itself is data_mix.sources.cityscapes.LABELS (checked row by row in
    # test_sources_cityscapes.py); here: the views evaluation derives from it.
    from cityscapesscripts.helpers import labels as official

    from data_mix.sources import cityscapes as cs

    assert cl.LABELS is cs.LABELS
    evaluated = [lab for lab in official.labels if lab.id >= 0 and not lab.ignoreInEval]
    assert cl.EVAL_IDS.tolist() == [lab.id for lab in evaluated]
    assert cl.EVAL_NAMES == tuple(lab.name for lab in evaluated)
    assert cl.INSTANCE_NAMES == tuple(lab.name for lab in evaluated if lab.hasInstances)
    assert cl.CATEGORIES == tuple(dict.fromkeys(lab.category for lab in official.labels))
    for label_id in range(cl.NUM_LABEL_IDS):
        assert tuple(cl.COLORS_BY_LABEL_ID[label_id]) == official.id2label[label_id].color
        assert cl.LABEL_TO_TRAIN_LUT[label_id] == official.id2label[label_id].trainId
    for train_id, label in official.trainId2label.items():
        if 0 <= train_id < 256:
            assert cl.TRAIN_TO_LABEL_LUT[train_id] == label.id


# A 2x5 scene computed by hand. Ground truth: a car instance (4 px) with one "cargroup" pixel
# beside it, a person instance (2 px), road, and one ignored pixel (label 0).
GT = np.array([[26, 26, 26, 24, 0],
               [26, 26, 7, 24, 7]], np.uint8)
INST = np.array([[26000, 26000, 26, 24000, 0],
                 [26000, 26000, 7, 24000, 7]], np.uint16)
PRED = np.array([[26, 27, 26, 24, 26],
                 [29, 26, 7, 7, 7]], np.uint8)


def test_hand_computed_scores():
    ev = CityscapesEvaluator()
    ev.add(PRED, GT, INST)
    r = ev.result()
    # car: TP 3 of 5 GT pixels; its prediction on the ignored pixel is no FP -> 3/5.
    # truck: 1 FP, no GT -> 0. person: TP 1, FN 1 -> 1/2. road: TP 2, FP 1 (person px) -> 2/3.
    assert r["classes"]["car"] == pytest.approx(0.6, abs=1e-15)
    assert r["classes"]["truck"] == 0.0
    assert r["classes"]["person"] == pytest.approx(0.5, abs=1e-15)
    assert r["classes"]["road"] == pytest.approx(2 / 3, abs=1e-15)
    assert r["classes"]["sky"] is None  # no ground truth, no prediction
    assert r["miou"] == pytest.approx((0.6 + 0.0 + 0.5 + 2 / 3) / 4, abs=1e-15)
    # iIoU: the car instance has TP 2, FN 2 (both weighted by avg/4), FP 0 -> 0.5; the group
    # pixel belongs to no instance. truck: no instance, 1 FP -> 0. person: 1 of 2 -> 0.5.
    assert r["classes_iiou"]["car"] == pytest.approx(0.5, abs=1e-15)
    assert r["classes_iiou"]["truck"] == 0.0
    assert r["classes_iiou"]["person"] == pytest.approx(0.5, abs=1e-15)
    assert r["classes_iiou"]["bus"] is None
    assert r["miiou"] == pytest.approx(1 / 3, abs=1e-15)
    # vehicle: 4 of the 5 car pixels predicted as an evaluated vehicle (caravan is not one) -> 4/5;
    # its iIoU counts the caravan pixel as a vehicle hit (official rule) -> 4w / 4w = 1.
    assert r["categories"]["vehicle"] == pytest.approx(0.8, abs=1e-15)
    assert r["categories_iiou"]["vehicle"] == pytest.approx(1.0, abs=1e-15)
    assert r["categories"]["human"] == pytest.approx(0.5, abs=1e-15)
    assert r["categories"]["flat"] == pytest.approx(2 / 3, abs=1e-15)
    assert "void" not in r["categories"]
    assert r["category_miou"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3, abs=1e-15)
    assert sum(map(sum, r["confusion_label_ids"])) == GT.size
    json.dumps(r, allow_nan=False)


def test_out_of_range_predictions_count_as_unlabeled():
    pred = PRED.astype(np.int32)
    pred[0, 0] = -1  # decoder's "unmatched"
    pred[1, 1] = 300
    ref = PRED.copy()
    ref[0, 0] = ref[1, 1] = 0
    a, b = CityscapesEvaluator(), CityscapesEvaluator()
    a.add(pred, GT, INST)
    b.add(ref, GT, INST)
    ra, rb = a.result(), b.result()
    assert ra["pred_pixels_invalid"] == 2 and rb["pred_pixels_invalid"] == 0
    for key in ("classes", "classes_iiou", "categories", "categories_iiou", "confusion_label_ids"):
        assert ra[key] == rb[key]


def test_train_ids_equal_label_ids():
    a, b = CityscapesEvaluator(pred_ids="train"), CityscapesEvaluator()
    a.add(cl.LABEL_TO_TRAIN_LUT[PRED], GT, INST)
    b.add(cl.TRAIN_TO_LABEL_LUT[cl.LABEL_TO_TRAIN_LUT[PRED]], GT, INST)
    assert a.result()["classes"] == b.result()["classes"]
    assert a.result()["categories_iiou"] == b.result()["categories_iiou"]


def test_merge_equals_single_pass():
    rng = np.random.default_rng(0)
    scenes = [synth.synthetic_labels(rng, 64, 128) for _ in range(3)]
    preds = [synth.synthetic_prediction(rng, lab) for lab, _ in scenes]
    whole, part1, part2 = CityscapesEvaluator(), CityscapesEvaluator(), CityscapesEvaluator()
    for k, ((lab, inst), pred) in enumerate(zip(scenes, preds)):
        whole.add(pred, lab, inst)
        (part1 if k < 1 else part2).add(pred, lab, inst)
    part1.merge(part2)
    a, b = whole.result(), part1.result()
    assert a["confusion_label_ids"] == b["confusion_label_ids"] and a["num_images"] == b["num_images"] == 3
    for key in ("classes_iiou", "categories_iiou"):
        for name, value in a[key].items():
            assert (value is None and b[key][name] is None) or math.isclose(value, b[key][name], abs_tol=1e-12)


def test_bad_inputs_are_named(tmp_path):
    ev = CityscapesEvaluator()
    bad_gt = GT.copy()
    bad_gt[0, 0] = 40
    with pytest.raises(ValueError, match=r"ground truth in frame_a.*\[40\]"):
        ev.add(PRED, bad_gt, INST, name="frame_a")
    with pytest.raises(ValueError, match="shape"):
        ev.add(PRED[:, :4], GT, INST, name="frame_b")
    with pytest.raises(ValueError, match="instance ids missing"):
        ev.add(PRED, GT)
    bad_inst = INST.copy()
    bad_inst[1, 2] = 7001  # an "instance" of road, which has none
    with pytest.raises(ValueError, match="classes without instances: \\[7001\\]"):
        ev.add(PRED, GT, bad_inst)
    with pytest.raises(ValueError, match="pred_ids"):
        CityscapesEvaluator(pred_ids="trainIds")
    rgb = tmp_path / "frankfurt_000000_000019_leftImg8bit.png"
    cv2.imwrite(str(rgb), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        read_label_png(rgb)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_label_png(tmp_path / "missing.png")


def test_find_predictions_follows_the_official_rule(tmp_path):
    files = synth.write_tree(tmp_path, 3, 32, 64, seed=1)
    gts = [f[1] for f in files]
    assert find_predictions(gts, tmp_path / "results") == [f[0] for f in files]
    assert instance_path_for(gts[0]) == files[0][2]
    (tmp_path / "results" / "sub").mkdir()
    dup = tmp_path / "results" / "sub" / files[1][0].name.replace("leftImg8bit", "pred")
    cv2.imwrite(str(dup), np.zeros((32, 64), np.uint8))
    with pytest.raises(FileNotFoundError, match=f"2 predictions .* for ground truth .*{gts[1].name}"):
        find_predictions(gts, tmp_path / "results")
    files[2][0].unlink()
    with pytest.raises(FileNotFoundError, match=f"no prediction for ground truth .*{gts[2].name}"):
        find_predictions(gts[2:], tmp_path / "results")


def test_threads_do_not_change_results(tmp_path):
    files = synth.write_tree(tmp_path, 4, 64, 128, seed=2)
    preds, gts = [f[0] for f in files], [f[1] for f in files]
    one = evaluate_files(preds, gts, num_threads=1, progress=False)
    two = evaluate_files(preds, gts, num_threads=2, progress=False)
    assert one["timing_s"]["threads"] == 1 and two["timing_s"]["threads"] == 2
    one.pop("timing_s"), two.pop("timing_s")
    assert one == two
    no_inst = evaluate_files(preds, gts, instance_scores=False, progress=False)
    assert "miiou" not in no_inst and no_inst["classes"] == one["classes"]


def test_eval_speed_benchmark_runs(tmp_path):
    # The benchmark script itself, tiny: it must keep running as the code changes.
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eval_speed.py"), "--num-images", "2",
                          "--height", "128", "--width", "256", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "speed-up" in out.stdout and "decode" in out.stdout
