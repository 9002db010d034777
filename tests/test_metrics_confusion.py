"""Joint histogram (OpenCV) equals numpy's bincount; the plain K-class IoU accumulator."""

import numpy as np
import pytest

from eval.metrics import confusion
from eval.metrics.confusion import ConfusionMatrix, as_uint8_labels, joint_histogram


def _bincount(gt, pred):
    return np.bincount(gt.astype(np.intp).ravel() * 256 + pred.ravel(), minlength=65536).reshape(256, 256)


def test_joint_histogram_equals_bincount(monkeypatch):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    pred = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    np.testing.assert_array_equal(joint_histogram(gt, pred), _bincount(gt, pred))
    # Large images are counted in row chunks (float32 counts are exact below 2**24).
    monkeypatch.setattr(confusion, "_MAX_PIXELS_PER_CALL", 53 * 5 + 7)
    np.testing.assert_array_equal(joint_histogram(gt, pred), _bincount(gt, pred))
    # Non-contiguous views.
    np.testing.assert_array_equal(joint_histogram(gt[:, ::2], pred[:, ::2]), _bincount(gt[:, ::2], pred[:, ::2]))


def test_as_uint8_labels():
    out = as_uint8_labels(np.array([[-1, 0, 18, 255, 256]]))
    assert out.dtype == np.uint8 and out.tolist() == [[255, 0, 18, 255, 255]]
    with pytest.raises(TypeError, match="integers"):
        as_uint8_labels(np.zeros((2, 2), np.float32))


def test_confusion_matrix_hand_computed():
    gt = np.array([[0, 0, 1, 1, 255, 2]])
    pred = np.array([[0, 1, 1, 1, 0, -1]])
    cm = ConfusionMatrix(num_classes=4, ignore_index=255)
    cm.add(pred, gt)
    r = cm.result()
    # class 0: TP 1, FN 1, FP 0 (the ignored pixel is not counted) -> 1/2
    # class 1: TP 2, FP 1 -> 2/3; class 2: a miss by an invalid prediction -> 0; class 3: none.
    assert r["iou"] == [0.5, pytest.approx(2 / 3), 0.0, None]
    assert r["miou"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)
    assert r["confusion"][2] == [0, 0, 0, 0, 1]  # last column: invalid predictions
    with pytest.raises(ValueError, match="one shape"):
        joint_histogram(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_package_exports_resolve():
    import eval.metrics as metrics

    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        metrics.nope  # noqa: B018
