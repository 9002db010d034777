"""Referring codec: one mask per named target, stated colors, every prompt syntax."""

import cv2
import numpy as np
import pytest

from tasks import colors as colorlib
from tasks import referring


def target_masks(h: int = 90, w: int = 120) -> np.ndarray:
    """bool (3, H, W): an ellipse, a rectangle and a blob touching it (non-overlapping)."""
    masks = np.zeros((3, h, w), np.uint8)
    cv2.ellipse(masks[0], (30, 45), (20, 30), 15, 0, 360, 1, -1)
    masks[1, 10:40, 60:110] = 1
    cv2.circle(masks[2], (85, 65), 18, 1, -1)
    masks[2, 10:40, 60:110] = 0
    return masks.astype(bool)


@pytest.mark.parametrize("background", [(0, 0, 0), (10, 170, 5)])
def test_clean_round_trip_exact(background):
    rng = np.random.default_rng(0)
    masks = target_masks()
    targets = ["man in pink t shirt", "the other man", "cat that is cleaning itself"]
    colors = [(255, 255, 255), (0, 255, 0), (0, 255, 255)]
    rgb = referring.encode(masks, colors, background=background)
    for layout in colorlib.LAYOUTS:
        for style in colorlib.STYLES:
            prompt = referring.render_prompt(rng, targets, colors, background=background,
                                             layout=layout, style=style)
            spec = referring.parse_prompt(prompt)
            assert spec["targets"] == targets and spec["background"] == background, prompt
            out = referring.decode(rgb, **spec)
            assert out.dtype == bool and out.shape == masks.shape
            np.testing.assert_array_equal(out, masks)


def test_noise_and_drift():
    rng = np.random.default_rng(1)
    masks = target_masks(300, 400)
    colors = np.array([(255, 255, 0), (0, 255, 255), (255, 0, 255)], np.uint8)
    rgb = referring.encode(masks, colors).astype(np.float64)
    rgb += rng.normal(0, 4, rgb.shape) + rng.uniform(-12, 12, 3)  # noise + a global drift
    out = referring.decode(np.clip(np.round(rgb), 0, 255).astype(np.uint8), colors)
    inter = (out & masks).sum((1, 2))
    union = (out | masks).sum((1, 2))
    print("IoU per target under noise 4 and drift 12:", np.round(inter / union, 4))
    assert np.all(inter / union >= 0.999)


def test_real_style_prompts():
    spec = referring.parse_prompt(
        "A segmentation map image. The stretching cat is rendered in green, the cat that is "
        "cleaning itself is in cyan.")
    assert spec["targets"] == ["stretching cat", "cat that is cleaning itself"]
    np.testing.assert_array_equal(spec["colors"], [(0, 255, 0), (0, 255, 255)])
    assert spec["background"] == (0, 0, 0)
    spec = referring.parse_prompt(
        "This image shows segmentation masks from the given image. The background is black "
        "color. The game control device is represented by a solid yellow.")
    assert spec["targets"] == ["game control device"] and spec["background"] == (0, 0, 0)
    np.testing.assert_array_equal(spec["colors"], [(255, 255, 0)])


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (7, 300, 3), (520, 510, 3)])
def test_random_images_never_raise(shape):
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    for colors in [[(255, 0, 0), (0, 0, 255)], np.zeros((0, 3))]:
        out = referring.decode(image, colors)
        assert out.dtype == bool and out.shape == (len(colors),) + shape[:2]
        assert not (out.sum(0) > 1).any()  # a pixel belongs to one target at most


def test_clear_errors():
    with pytest.raises(ValueError, match="3 masks but 2 colors"):
        referring.encode(target_masks(), [(1, 2, 3), (4, 5, 6)])
    with pytest.raises(ValueError, match="one distinct name per color"):
        referring.render_prompt(np.random.default_rng(0), ["a", "a"], [(1, 2, 3), (4, 5, 6)])
