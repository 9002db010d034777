"""Normal metrics against hand-computed values: angles, pooled (DSINE) and per-image (Marigold)."""

import json
import math

import numpy as np
import pytest

from eval.metrics.normals import NormalsEvaluator, angular_error_deg


def _tilted(angles_deg):
    """(1, N, 3) unit normals tilted from +z by the given angles (about the x axis)."""
    a = np.radians(np.asarray(angles_deg, np.float64))
    return np.stack([np.zeros_like(a), np.sin(a), np.cos(a)], -1)[None]


def test_angular_error_hand_computed():
    x, y, z = np.eye(3)
    pred = np.stack([x, (x + y) / math.sqrt(2), -z, np.zeros(3), 5 * z])
    gt = np.stack([y, x, z, z, z])
    np.testing.assert_allclose(angular_error_deg(pred, gt), [90.0, 45.0, 180.0, 90.0, 0.0], atol=1e-6)


def test_pooled_and_per_image_statistics():
    ev = NormalsEvaluator()
    up = _tilted([0, 0, 0, 0])
    ev.add(_tilted([0, 10, 20, 40]), up, name="a")
    gt_b = _tilted([0, 0, 0])
    gt_b[0, 2] = 0.0  # a missing ground-truth normal: not scored
    ev.add(_tilted([8, 12, 77]), gt_b, name="b")
    r = ev.result()
    errors = [0, 10, 20, 40, 8, 12]
    pooled = r["pooled"]
    assert pooled["mean"] == pytest.approx(15.0, abs=1e-9)
    assert pooled["median"] == pytest.approx(11.0, abs=1e-4)  # histogram bins of 1e-4 degree
    assert pooled["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 6), abs=1e-9)
    assert pooled["under_5"] == pytest.approx(100 / 6)
    assert pooled["under_11.25"] == pytest.approx(300 / 6)
    assert pooled["under_22.5"] == pytest.approx(500 / 6)
    assert pooled["under_30"] == pytest.approx(500 / 6)
    per_image = r["per_image_mean"]
    assert per_image["mean"] == pytest.approx((17.5 + 10.0) / 2, abs=1e-9)
    assert per_image["median"] == pytest.approx((15.0 + 10.0) / 2, abs=1e-9)
    assert per_image["under_11.25"] == pytest.approx((50.0 + 50.0) / 2)
    assert r["num_pixels"] == 6 and r["num_images"] == 2
    json.dumps(r, allow_nan=False)


def test_odd_count_median_mask_and_merge():
    a, b = NormalsEvaluator(), NormalsEvaluator()
    a.add(_tilted([1, 2, 3]), _tilted([0, 0, 0]))
    mask = np.array([[True, True, False]])
    b.add(_tilted([30, 50, 70]), _tilted([0, 0, 0]), mask=mask)
    a.merge(b)
    r = a.result(per_image=False)
    assert r["pooled"]["median"] == pytest.approx(3.0, abs=1e-4)  # of 1, 2, 3, 30, 50
    assert r["num_pixels"] == 5 and "per_image" not in r


def test_empty_and_bad_inputs():
    ev = NormalsEvaluator()
    assert ev.add(np.ones((2, 2, 3)), np.zeros((2, 2, 3)), name="blank") is None
    assert ev.result()["skipped"] == ["blank"] and ev.result()["pooled"]["mean"] is None
    json.dumps(ev.result(), allow_nan=False)
    with pytest.raises(ValueError, match="'x'"):
        ev.add(np.ones((2, 2, 3)), np.ones((2, 3, 3)), name="x")
