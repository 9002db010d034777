"""Binary-mask metrics: Dice and HD95 by hand and against a brute-force reference; strata."""

import json
import math

import numpy as np
import pytest

from eval.metrics.binary import BinaryMaskEvaluator, dice, hd95, strata


def _points(shape, *pts):
    m = np.zeros(shape, bool)
    for y, x in pts:
        m[y, x] = True
    return m


def test_dice_hand_computed():
    pred = _points((4, 4), (0, 0), (0, 1), (0, 2), (1, 0))
    gt = _points((4, 4), (0, 0), (0, 1), (0, 2), (3, 3), (3, 2), (2, 3))
    assert dice(pred, gt) == pytest.approx(200 * 3 / 10)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 100.0


def test_hd95_hand_computed():
    # Isolated pixels are their own surface. pred -> gt distances 0 and 10, gt -> pred 0:
    # 95th percentile of [0, 0, 10] with linear interpolation = 0 + 0.9 * 10.
    gt = _points((30, 30), (10, 10))
    pred = _points((30, 30), (10, 10), (10, 20))
    assert hd95(pred, gt) == pytest.approx(9.0, abs=1e-12)
    # A one-pixel-thick segment shifted down by 4 rows: every surface distance is 4.
    seg = np.zeros((20, 20), bool)
    seg[5, 2:7] = True
    assert hd95(np.roll(seg, 4, axis=0), seg) == pytest.approx(4.0)
    assert hd95(seg, seg) == 0.0


def _brute_force_hd95(a, b):
    """Surface by the 4-neighbour rule (image edge counts as outside), pairwise distances."""
    def surface(m):
        p = np.pad(m, 1)
        interior = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return np.argwhere(m & ~interior)

    sa, sb = surface(a), surface(b)
    d = np.sqrt(((sa[:, None, :] - sb[None, :, :]) ** 2).sum(-1))
    return np.percentile(np.concatenate([d.min(1), d.min(0)]), 95)


def test_hd95_equals_brute_force_on_blobs():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :64]
    for _ in range(5):
        cy, cx, r = rng.uniform(10, 38), rng.uniform(10, 54), rng.uniform(4, 12)
        gt = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        gt[0, :5] = True  # touches the image edge
        pred = (yy - cy - rng.uniform(-4, 4)) ** 2 / 1.3 + (xx - cx) ** 2 < (r + rng.uniform(-3, 3)) ** 2
        pred |= rng.random(pred.shape) < 0.002  # speckles far away
        assert hd95(pred, gt) == pytest.approx(_brute_force_hd95(pred, gt), abs=1e-9)


def test_empty_masks():
    empty = np.zeros((30, 40), bool)
    blob = _points((30, 40), (3, 3))
    assert hd95(empty, empty) == 0.0
    assert hd95(empty, blob) == pytest.approx(50.0)  # the 30x40 diagonal
    assert math.isnan(hd95(blob, empty, empty_hd95="nan"))
    ev = BinaryMaskEvaluator(empty_hd95="nan")
    ev.add("missed", empty, blob)
    ev.add("hit", blob, blob)
    r = ev.result()["all"]
    assert r["hd95"] == 0.0 and r["hd95_undefined"] == 1 and r["dice"] == 50.0


def test_strata_and_evaluator():
    reference = {f"case{i:02d}": float(i) for i in range(40)}  # higher = better
    s = strata(reference)
    assert s == {"easy": ["case39", "case38"], "hard": ["case00", "case01"]}  # ceil(0.05 * 40) = 2
    assert strata({"a": 1.0, "b": 1.0, "c": 0.0}, fraction=0.3) == {"easy": ["a"], "hard": ["c"]}
    assert strata({"a": 3.0, "b": 9.0}, fraction=0.5, higher_is_better=False) == {"easy": ["a"], "hard": ["b"]}
    ev = BinaryMaskEvaluator()
    square = np.zeros((10, 10), bool)
    square[2:6, 2:6] = True
    for i in range(40):
        ev.add(f"case{i:02d}", np.roll(square, i % 3, axis=1), square)
    r = ev.result(s, per_case=True)
    assert r["easy"]["num_cases"] == 2 and r["hard"]["num_cases"] == 2
    easy = [dice(np.roll(square, shift, 1), square) for shift in (39 % 3, 38 % 3)]
    assert r["easy"]["dice"] == pytest.approx(sum(easy) / 2)
    assert len(r["per_case"]) == 40
    json.dumps(r, allow_nan=False)
    with pytest.raises(ValueError, match="already added"):
        ev.add("case00", square, square)
    with pytest.raises(KeyError, match="not scored"):
        ev.result({"easy": ["nope"]})
