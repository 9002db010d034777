"""Referring segmentation metrics on hand-made masks: cIoU vs gIoU, precision@t, empty targets."""

import json

import numpy as np
import pytest

from eval.metrics.referring import ReferringEvaluator, intersection_union


def _mask(shape, *boxes):
    m = np.zeros(shape, bool)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


def test_ciou_giou_precision_hand_computed():
    ev = ReferringEvaluator()
    # Large object, IoU 0.8: I = 80, U = 100.
    assert ev.add(_mask((20, 20), (0, 10, 0, 8)), _mask((20, 20), (0, 10, 0, 10)), name="big") == 0.8
    # Small object, IoU 0.5: I = 2, U = 4.
    assert ev.add(_mask((4, 4), (0, 1, 0, 3)), _mask((4, 4), (0, 1, 1, 4)), name="small") == 0.5
    # Miss: IoU 0, I = 0, U = 6.
    assert ev.add(_mask((4, 4), (3, 4, 0, 2)), _mask((4, 4), (0, 1, 0, 4))) == 0.0
    r = ev.result(per_expression=True)
    assert r["ciou"] == pytest.approx((80 + 2 + 0) / (100 + 4 + 6), abs=1e-15)
    assert r["giou"] == pytest.approx((0.8 + 0.5 + 0.0) / 3, abs=1e-15)
    # IoU >= t: 0.5 passes at t = 0.5 (>=, LAVT), 0.8 passes up to 0.8.
    assert r["precision"] == pytest.approx({"0.5": 200 / 3, "0.6": 100 / 3, "0.7": 100 / 3, "0.8": 100 / 3, "0.9": 0.0})
    json.dumps(r, allow_nan=False)
    assert r["per_expression"][0] == {"name": "big", "iou": 0.8, "intersection": 80, "union": 100}


def test_empty_target_and_merge():
    ev = ReferringEvaluator()
    empty = np.zeros((3, 3), bool)
    assert ev.add(empty, empty) == 1.0  # no-object target correctly left empty (LISA)
    other = ReferringEvaluator()
    other.add(_mask((3, 3), (0, 1, 0, 1)), empty)
    ev.merge(other)
    r = ev.result()
    assert r["giou"] == 0.5 and r["ciou"] == 0.0 and r["num_expressions"] == 2
    assert ReferringEvaluator(empty_iou=0.0).add(empty, empty) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 3)))
