"""Instance codec: exact round trips, noise / JPEG / anti-aliasing robustness, scores, RLE."""

import json

import cv2
import numpy as np
import pytest

from tasks import instance, semantic


def blob_masks(rng: np.random.Generator, h: int, w: int, n: int, scale: int) -> np.ndarray:
    """bool (n, H, W) non-overlapping blob instances (background where no field wins)."""
    fields = rng.standard_normal((n + 1, h // scale + 2, w // scale + 2)).astype(np.float32)
    up = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in fields])
    labels = up.argmax(0) - 1
    return labels[None] == np.arange(n)[:, None, None]


def jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2 = a.reshape(len(a), -1).astype(np.float64)
    b2 = b.reshape(len(b), -1).astype(np.float64)
    inter = a2 @ b2.T
    return inter / (a2.sum(1)[:, None] + b2.sum(1)[None] - inter)


def best_ious(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """For every true instance, the IoU of its best-matching decoded mask."""
    return iou_matrix(truth, found).max(1) if len(found) else np.zeros(len(truth))


@pytest.mark.parametrize("background", [(0, 0, 0), (88, 50, 82), (255, 255, 255)])
def test_clean_round_trip_exact(background):
    rng = np.random.default_rng(0)
    masks = blob_masks(rng, 120, 160, 14, 20)
    rgb = instance.encode(masks, background=background)
    spec = instance.parse_prompt(instance.render_prompt(rng, "croissant", background))
    assert spec == {"target": "croissant", "background": background}
    out = instance.decode(rgb, **spec)
    assert len(out.masks) == len(masks)
    # Same masks, in another order: match through the colors.
    colors = semantic.palette(len(masks), exclude=(background,))
    for mask, color in zip(out.masks, out.colors):
        j = int(np.flatnonzero((colors == color).all(1))[0])
        np.testing.assert_array_equal(mask, masks[j])


def test_noise_every_instance_recovered():
    rng = np.random.default_rng(1)
    masks = blob_masks(rng, 384, 512, 16, 48)
    noisy = instance.encode(masks) + rng.normal(0, 4, masks.shape[1:] + (3,))
    out = instance.decode(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    ious = best_ious(masks, out.masks)
    print(f"noise sigma 4: {len(out.masks)} decoded for {len(masks)}, min IoU {ious.min():.4f}")
    assert len(out.masks) == len(masks)
    assert ious.min() >= 0.95


def test_jpeg_and_antialiasing_make_no_spurious_instances():
    rng = np.random.default_rng(2)
    masks = blob_masks(rng, 3 * 384, 3 * 512, 12, 3 * 80)
    big = instance.encode(masks)
    # Anti-aliased edges: render at 3x and area-average down; then JPEG 90 on top.
    small = cv2.resize(big, (512, 384), interpolation=cv2.INTER_AREA)
    truth = np.stack([cv2.resize(m.astype(np.float32), (512, 384),
                                 interpolation=cv2.INTER_AREA) > 0.5 for m in masks])
    for name, image, floor in [("anti-aliased", small, 0.95),
                               ("anti-aliased + JPEG 90", jpeg(small), 0.85)]:
        out = instance.decode(image)
        ious = best_ious(truth, out.masks)
        print(f"{name}: {len(out.masks)} decoded for {len(masks)}, IoU min {ious.min():.4f} "
              f"mean {ious.mean():.4f}")
        assert len(out.masks) == len(masks)
        assert ious.min() >= floor


def test_scores_and_types():
    rng = np.random.default_rng(3)
    masks = blob_masks(rng, 96, 128, 10, 16)
    out = instance.decode(jpeg(instance.encode(masks)))
    assert out.masks.dtype == bool and out.masks.shape[1:] == (96, 128)
    assert out.scores.dtype == np.float32 and out.colors.dtype == np.uint8
    assert len(out.scores) == len(out.masks) == len(out.colors)
    assert np.all((out.scores >= 0) & (out.scores <= 1))
    assert np.all(np.diff(out.scores) <= 0)  # sorted by decreasing score
    # A large solid instance scores higher than a thin (3 px) one.
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:40, 8:40] = (255, 0, 0)
    image[50:53, 4:60] = (0, 0, 255)
    out = instance.decode(image, min_area=16)
    assert len(out.masks) == 2 and tuple(out.colors[0]) == (255, 0, 0)
    assert out.scores[0] > 0.75 > 0.5 > out.scores[1]


def test_thin_edge_bands_are_dropped():
    """Anti-aliasing between two instances makes a band of mixed color; when the mix equals a
    third instance's color the band must not join it, and alone it is no instance."""
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = (200, 0, 0)
    image[:, 50:] = (0, 0, 200)
    image[:, 49] = (120, 0, 80)  # the mixed band, 2 px wide
    image[:, 50] = (80, 0, 120)
    out = instance.decode(image, min_area=16)
    assert sorted(map(tuple, out.colors.tolist())) == [(0, 0, 200), (200, 0, 0)]
    image[60:80, 10:30] = (100, 0, 100)  # a real instance of the band's color
    out = instance.decode(image, min_area=16)
    assert sorted(map(tuple, out.colors.tolist())) == [(0, 0, 200), (100, 0, 100), (200, 0, 0)]
    band = out.masks[[tuple(c) == (100, 0, 100) for c in out.colors.tolist()]][0]
    assert band.sum() == 400 and not band[:, 49:51].any()


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (3, 200, 3), (64, 48, 3),
                                   (530, 520, 3)])
def test_random_images_never_raise(shape):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    for background in [(0, 0, 0), None]:
        out = instance.decode(image, background=background)
        assert isinstance(out, instance.Instances)
        assert out.masks.dtype == bool and out.masks.shape[1:] == shape[:2]
        assert out.scores.dtype == np.float32 and out.colors.shape == (len(out.masks), 3)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_rle_round_trip():
    rng = np.random.default_rng(5)
    masks = blob_masks(rng, 37, 53, 5, 8)
    rles = instance.to_rle(masks)
    assert all(r["size"] == [37, 53] for r in rles)
    json.dumps(rles)  # JSON-ready (counts are str)
    np.testing.assert_array_equal(instance.from_rle(rles), masks)
    np.testing.assert_array_equal(instance.from_rle(json.loads(json.dumps(rles))), masks)


def test_encode_colors_far_from_background_and_overlaps():
    rng = np.random.default_rng(6)
    masks = blob_masks(rng, 64, 64, 6, 16)
    bg = (16, 170, 5)
    rgb = instance.encode(masks, background=bg)
    used = np.unique(rgb.reshape(-1, 3), axis=0)
    assert semantic.min_distance(used[(used != bg).any(1)], exclude=[bg]) > 150
    big = np.zeros((2, 10, 10), bool)
    big[0, :, :] = True
    big[1, 2:6, 2:6] = True  # overlaps the first: painted on top since smaller
    out = instance.decode(instance.encode(big, colors=[(255, 0, 0), (0, 0, 255)]), min_area=4)
    assert len(out.masks) == 2
    with pytest.raises(ValueError, match="2 masks but 1 colors"):
        instance.encode(big, colors=[(1, 2, 3)])


def test_prompt_targets_round_trip():
    rng = np.random.default_rng(7)
    for target in ["price tag", "wine bottles", "piece of garlic", "cat, left", "person in red",
                   'the "crescent" croissant', "car's wheel", "x"]:
        for _ in range(10):
            bg = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.5 else (
                0, 0, 0)
            spec = instance.parse_prompt(instance.render_prompt(rng, target, background=bg))
            assert spec == {"target": target, "background": bg}
