"""PSNR / SSIM: hand-computed PSNR, SSIM against a direct windowed reference and scikit-image."""

import json
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from eval.metrics.restoration import RestorationEvaluator, psnr, ssim


def test_psnr_hand_computed():
    gt = np.zeros((8, 8, 3), np.uint8)
    pred = np.full((8, 8, 3), 10, np.uint8)
    assert psnr(pred, gt) == pytest.approx(10 * math.log10(255**2 / 100.0), abs=1e-12)
    pred[:2] = 0  # these rows now match; a 2-px crop drops them, leaving only 10-level errors
    assert psnr(pred, gt, crop=2) == pytest.approx(10 * math.log10(255**2 / 100.0), abs=1e-12)
    assert psnr(gt, gt) == math.inf


def _reference_ssim(x, y):
    """Wang et al. SSIM written out: explicit 11x11 Gaussian window over every valid position."""
    ax = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for ch in range(3):
        px = sliding_window_view(x[..., ch].astype(np.float64), (11, 11))
        py = sliding_window_view(y[..., ch].astype(np.float64), (11, 11))
        mx, my = (px * w).sum((-1, -2)), (py * w).sum((-1, -2))
        vx = (px**2 * w).sum((-1, -2)) - mx**2
        vy = (py**2 * w).sum((-1, -2)) - my**2
        cxy = (px * py * w).sum((-1, -2)) - mx * my
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        scores.append(s.mean())
    return float(np.mean(scores))


def _noisy_pair(shape=(40, 52, 3), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = np.stack([(yy * 5) % 256, (xx * 3 + yy) % 256, ((xx - yy) * 2) % 256], -1).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    return noisy, clean


def test_ssim_equals_direct_windowed_reference():
    noisy, clean = _noisy_pair()
    assert ssim(noisy, clean) == pytest.approx(_reference_ssim(noisy, clean), abs=1e-12)
    assert ssim(clean, clean) == pytest.approx(1.0, abs=1e-15)
    assert ssim(noisy, clean, crop=3) == pytest.approx(_reference_ssim(noisy[3:-3, 3:-3], clean[3:-3, 3:-3]), abs=1e-12)


def test_ssim_equals_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a test dependency")
    noisy, clean = _noisy_pair((64, 80, 3), seed=1)
    theirs = skimage_metrics.structural_similarity(noisy, clean, channel_axis=-1, gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(noisy, clean) == pytest.approx(theirs, abs=1e-12)
    assert psnr(noisy, clean) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(clean, noisy, data_range=255),
                                               abs=1e-12)


def test_evaluator_means_and_errors():
    noisy, clean = _noisy_pair()
    ev = RestorationEvaluator()
    a = ev.add(noisy, clean, name="a")
    ev.add(clean, clean, name="same")  # PSNR +inf: counted at the 100 dB cap, never dropped
    r = ev.result(per_image=True)
    assert r["psnr"] == pytest.approx((a["psnr"] + 100.0) / 2) and r["num_identical"] == 1
    assert r["ssim"] == pytest.approx((a["ssim"] + 1.0) / 2)
    assert r["per_image"][1]["psnr"] is None
    json.dumps(r, allow_nan=False)
    with pytest.raises(ValueError, match="RGB"):
        psnr(noisy[..., 0], clean[..., 0])
