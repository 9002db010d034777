"""Depth metrics against hand-computed values; presets, crops, clipping, alignment, averaging."""

import json
import math

import numpy as np
import pytest

from eval.metrics.depth import DepthEvaluator, align, depth_metrics
from eval.metrics.depth_presets import PRESETS, DepthPreset, eval_mask, kitti_benchmark_crop


def test_metrics_hand_computed():
    # g = 2 m everywhere; p = 2, 2.4, 1.5, 4 -> ratios max(p/g, g/p) = 1, 1.2, 4/3, 2.
    g = np.full(4, 2.0)
    p = np.array([2.0, 2.4, 1.5, 4.0])
    m = depth_metrics(p, g)
    assert m["abs_rel"] == pytest.approx((0 + 0.2 + 0.25 + 1.0) / 4, abs=1e-15)
    assert m["sq_rel"] == pytest.approx((0 + 0.16 / 2 + 0.25 / 2 + 4.0 / 2) / 4, abs=1e-15)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0.16 + 0.25 + 4.0) / 4), abs=1e-15)  # 1.05
    logs = [0.0, math.log(1.2), math.log(0.75), math.log(2.0)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4), abs=1e-15)
    assert m["log10"] == pytest.approx(sum(abs(v) for v in logs) / math.log(10) / 4, abs=1e-15)
    mean, mean_sq = sum(logs) / 4, sum(v * v for v in logs) / 4
    assert m["silog"] == pytest.approx(100 * math.sqrt(mean_sq - mean * mean), abs=1e-12)
    assert m["i_rmse"] == pytest.approx(math.sqrt((0 + (1 / 2.4 - 0.5) ** 2 + (1 / 1.5 - 0.5) ** 2 + 0.25**2) / 4),
                                        abs=1e-15)
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.5, 0.75, 0.75)  # 1.25, 1.5625, 1.953125


def test_perfect_prediction():
    g = np.linspace(0.5, 9.0, 50)
    m = depth_metrics(g, g)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["silog"] == 0 and m["delta1"] == 1.0


def test_nyu_eigen_crop_range_and_clipping():
    gt = np.full((480, 640), 2.0)
    gt[:45] = 7.0                 # outside the Eigen crop: ignored whatever the prediction
    gt[100, 100] = 12.0           # beyond 10 m: invalid
    gt[101, 101] = np.nan         # missing
    gt[102, 102] = 0.0            # missing
    pred = np.full_like(gt, 2.0)
    pred[200, 200] = np.inf       # white pixel -> clipped to 10 m -> |10 - 2| / 2 = 4
    ev = DepthEvaluator("nyuv2")
    r = ev.add(pred, gt, name="nyu_0")
    valid = 426 * 560 - 3
    assert r["num_pixels"] == valid
    assert r["abs_rel"] == pytest.approx(4.0 / valid, abs=1e-15)
    assert r["delta1"] == pytest.approx((valid - 1) / valid, abs=1e-15)


def test_kitti_garg_and_eigen_masks():
    # int(0.40810811*352)=143 .. int(0.99189189*352)=349 rows, int(0.03594771*1216)=43 ..
    # int(0.96405229*1216)=1172 columns; Eigen rows 117 .. 321, same columns.
    assert eval_mask("garg", (352, 1216)).sum() == (349 - 143) * (1172 - 43)
    assert eval_mask("eigen_kitti", (352, 1216)).sum() == (321 - 117) * (1172 - 43)
    gt = np.full((352, 1216), 20.0)
    gt[::2] = 0.0  # KITTI ground truth is sparse: 0 = no LiDAR return
    r = DepthEvaluator("kitti_garg").add(np.full_like(gt, 25.0), gt)
    assert r["num_pixels"] == 103 * 1129 and r["abs_rel"] == pytest.approx(0.25, abs=1e-15)
    frame = np.arange(375 * 1242).reshape(375, 1242)
    crop = kitti_benchmark_crop(frame)
    assert crop.shape == (352, 1216) and crop[0, 0] == frame[23, 13]
    with pytest.raises(ValueError, match="kitti_benchmark_crop"):
        DepthEvaluator("kitti_eigen").add(frame.astype(float), frame.astype(float))


def test_eth3d_caps_infinite_predictions_and_diode_needs_its_mask():
    gt = np.full((8, 8), 50.0)
    pred = np.full_like(gt, 50.0)
    pred[0, 0] = np.inf
    r = DepthEvaluator("eth3d").add(pred, gt)
    assert r["abs_rel"] == pytest.approx((1000.0 - 50.0) / 50.0 / 64, abs=1e-12)
    with pytest.raises(ValueError, match="validity mask"):
        DepthEvaluator("diode").add(pred, gt)
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    gt[2, 2] = 400.0  # beyond 350 m but inside DIODE's own mask: Marigold keeps it
    r = DepthEvaluator("diode").add(np.full_like(gt, 50.0), gt, mask=mask)
    assert r["num_pixels"] == 4 and r["abs_rel"] == pytest.approx((350 / 400) / 4, abs=1e-12)


def test_scores_average_over_images_not_pixels():
    ev = DepthEvaluator("scannet")
    ev.add(np.full((2, 2), 1.1), np.full((2, 2), 1.0), name="small")      # abs_rel 0.1 on 4 px
    ev.add(np.full((20, 20), 1.3), np.full((20, 20), 1.0), name="large")  # abs_rel 0.3 on 400 px
    ev.add(np.ones((3, 3)), np.full((3, 3), np.nan), name="empty")        # no valid pixel
    r = ev.result()
    assert r["metrics"]["abs_rel"] == pytest.approx(0.2, abs=1e-15)
    assert r["num_images"] == 2 and r["skipped"] == ["empty"]
    assert [p["name"] for p in r["per_image"]] == ["small", "large"]
    json.dumps(r, allow_nan=False)


def test_alignments_recover_affine_predictions():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 9.0, (16, 16))
    valid = np.ones_like(gt, bool)
    aligned, params = align(0.5 * gt + 1.0, gt, valid, "least_squares")
    np.testing.assert_allclose(aligned, gt, rtol=1e-12)
    assert params == pytest.approx({"scale": 2.0, "shift": -2.0}, abs=1e-10)
    aligned, params = align(3.0 / gt + 0.1, gt, valid, "least_squares_disparity")
    np.testing.assert_allclose(aligned, gt, rtol=1e-10)
    assert params == pytest.approx({"scale": 1 / 3, "shift": -1 / 30}, abs=1e-10)
    aligned, params = align(2.0 * gt, gt, valid, "median")
    np.testing.assert_allclose(aligned, gt, rtol=1e-12)
    r = DepthEvaluator("scannet", alignment="least_squares").add(0.5 * gt + 1.0, gt)
    assert r["abs_rel"] < 1e-12 and r["scale"] == pytest.approx(2.0)


def test_presets_and_errors():
    assert set(PRESETS) == {"nyuv2", "kitti_garg", "kitti_eigen", "scannet", "eth3d", "diode", "ibims1"}
    assert PRESETS["ibims1"].max_depth == 10.0 and PRESETS["ibims1"].crop == "eigen_nyu"
    with pytest.raises(KeyError, match="unknown depth preset 'nyu'"):
        DepthEvaluator("nyu")
    with pytest.raises(ValueError, match="alignment"):
        DepthEvaluator("nyuv2", alignment="affine")
    with pytest.raises(ValueError, match="NaN"):
        DepthEvaluator("scannet").add(np.full((2, 2), np.nan), np.ones((2, 2)))
    custom = DepthPreset("lab", 0.1, 5.0)
    assert DepthEvaluator(custom).add(np.full((2, 2), 6.0), np.full((2, 2), 4.0))["abs_rel"] == pytest.approx(0.25)
    assert DepthEvaluator("eth3d").result()["preset"]["max_depth"] is None  # JSON has no inf
