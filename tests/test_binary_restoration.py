"""Binary mask codec (threshold / Otsu) and the restoration identity codec with its prompts."""

import re

import cv2
import numpy as np
import pytest

from tasks import binary, restoration


def polyp_mask(h: int = 120, w: int = 160) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (70, 60), (40, 28), 30, 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("fg, bg", [((255, 255, 255), (0, 0, 0)), ((255, 0, 0), (0, 0, 80))])
def test_round_trip_both_methods(fg, bg):
    rng = np.random.default_rng(0)
    mask = polyp_mask()
    rgb = binary.encode(mask, foreground=fg, background=bg)
    spec = binary.parse_prompt(binary.render_prompt(rng, "polyp", foreground=fg, background=bg))
    assert spec == {"target": "polyp", "foreground": fg, "background": bg}
    for method in binary.METHODS:
        np.testing.assert_array_equal(binary.decode(rgb, method=method, **spec), mask)


def test_noise_and_soft_edges():
    rng = np.random.default_rng(1)
    mask = polyp_mask(480, 640)
    soft = cv2.GaussianBlur(binary.encode(mask).astype(np.float32), (0, 0), 1.5)
    noisy = np.clip(soft * 0.8 + 20 + rng.normal(0, 12, soft.shape), 0, 255).astype(np.uint8)
    for method in binary.METHODS:
        out = binary.decode(noisy, method=method)
        iou = (out & mask).sum() / (out | mask).sum()
        print(f"{method}: IoU {iou:.4f} on a blurred, dimmed, noisy mask")
        assert iou >= 0.97


def test_medical_prompt_and_uniform_images():
    assert binary.parse_prompt("generate a binary segmentation mask of the polyp") == {
        "target": "polyp", "foreground": (255, 255, 255), "background": (0, 0, 0)}
    for value, expected in [(0, False), (40, False), (220, True)]:
        image = np.full((5, 6, 3), value, np.uint8)
        for method in binary.METHODS:
            out = binary.decode(image, method=method)
            assert out.dtype == bool and out.shape == (5, 6) and np.all(out == expected)


def test_targets_with_punctuation_round_trip():
    rng = np.random.default_rng(2)
    for target in ["polyp", "skin lesion", "optic disc, left", "tumor in the liver",
                   'the "core" region', "cell"]:
        for _ in range(8):
            assert binary.parse_prompt(binary.render_prompt(rng, target))["target"] == target


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (9, 4, 3), (300, 200, 3)])
def test_random_images_never_raise(shape):
    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    for method in binary.METHODS:
        out = binary.decode(image, method=method)
        assert out.dtype == bool and out.shape == shape[:2]
    out = restoration.decode(image)
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, image)


def test_binary_errors():
    with pytest.raises(ValueError, match="both"):
        binary.decode(np.zeros((2, 2, 3), np.uint8), foreground=(1, 2, 3), background=(1, 2, 3))
    with pytest.raises(ValueError, match="method"):
        binary.decode(np.zeros((2, 2, 3), np.uint8), method="kmeans")


def test_restoration_every_kind_parses_back():
    rng = np.random.default_rng(4)
    for kind in restoration.KINDS:
        phrasings, _ = restoration._KINDS[kind]
        for text in phrasings:  # every phrasing, not only the drawn ones
            text = text.format(s="")
            assert restoration.parse_prompt(text) == {"kind": kind}, text
            # A phrasing never carries another kind's keywords.
            others = [k for k in restoration.KINDS
                      if k != kind and restoration._PATTERNS[k].search(text)]
            assert not others, (text, others)
    spec = restoration.parse_prompt(restoration.render_prompt(rng, "super_resolution", scale=4))
    assert spec == {"kind": "super_resolution", "scale": 4}
    assert restoration.parse_prompt("Make it look nice.") == {"kind": None}


def test_restoration_identity_and_errors():
    image = np.random.default_rng(5).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    encoded = restoration.encode(image, kind="derain")
    np.testing.assert_array_equal(encoded, image)
    assert encoded is not image
    with pytest.raises(ValueError, match=re.escape("unknown restoration kind 'recolor'")):
        restoration.render_prompt(np.random.default_rng(0), "recolor")
    with pytest.raises(ValueError, match="super_resolution"):
        restoration.render_prompt(np.random.default_rng(0), "denoise", scale=2)
    with pytest.raises(ValueError, match="uint8"):
        restoration.decode(np.zeros((2, 2, 3), np.float32))
