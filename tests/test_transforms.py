"""Geometric transforms keep every field of a record aligned and every value meaningful."""

import numpy as np
import pytest

from data_mix import transforms as T
from tasks import normals


def _record(h=24, w=32, seed=0):
    """A record whose fields are easy to check: the image encodes pixel coordinates, depth has
    two planes (1 m, 10 m) with a NaN hole, normals are unit vectors varying per pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    image = np.stack([yy * 255 // (h - 1), xx * 255 // (w - 1), np.full_like(yy, 77)], -1).astype(np.uint8)
    depth = np.where(xx < w // 2, 1.0, 10.0).astype(np.float32)
    depth[h // 3: h // 2, w // 3: w // 2] = np.nan
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[:2] = 0.0  # invalid rows
    semantic = (yy // 5 + 3 * (xx // 7)).astype(np.int32) % 6 - 1  # includes -1 (ignore)
    masks = np.stack([xx < w // 3, (yy > h // 2) & (xx > w // 2)])
    return {
        "image": image, "depth": depth, "normals": n, "semantic": semantic,
        "classes": [f"c{i}" for i in range(5)],
        "instance_masks": masks, "instance_classes": ["a", "b"],
        "referring": [{"expressions": ["the thing on the left", "Leftmost one"], "mask": masks[0]}],
        "meta": {"dataset": "unit", "id": "r0", "intrinsics": [[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]],
                 "eval_crop": [2, 22, 3, 30]},
    }


def _project(k, point):
    k = np.asarray(k, np.float64)
    x, y, z = point
    return k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]


def test_hflip_normal_map_decodes_to_flipped_x_negated_normals():
    rec = _record()
    flipped = T.hflip(rec)
    decoded = normals.decode(normals.encode(flipped["normals"]))
    expected = normals.decode(normals.encode(rec["normals"]))[:, ::-1] * np.array([-1, 1, 1])
    valid = np.linalg.norm(rec["normals"][:, ::-1], axis=-1) > 0
    cos = np.sum(decoded[valid] * expected[valid], axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0
    # And against the ground truth itself: x negated, mirrored columns, still unit length.
    np.testing.assert_allclose(flipped["normals"], rec["normals"][:, ::-1] * np.array([-1, 1, 1], np.float32))


def test_hflip_moves_every_field_and_camera_consistently():
    rec = _record()
    out = T.hflip(rec)
    for key in ("image", "depth", "semantic"):
        np.testing.assert_array_equal(out[key], rec[key][:, ::-1])
    np.testing.assert_array_equal(out["instance_masks"], rec["instance_masks"][:, :, ::-1])
    np.testing.assert_array_equal(out["referring"][0]["mask"], rec["referring"][0]["mask"][:, ::-1])
    assert out["referring"][0]["expressions"] == ["the thing on the right", "Rightmost one"]
    # A mirrored scene point projects to the mirrored pixel: u' = W - 1 - u.
    u, v = _project(rec["meta"]["intrinsics"], (0.3, -0.2, 2.0))
    u2, v2 = _project(out["meta"]["intrinsics"], (-0.3, -0.2, 2.0))
    assert (u2, v2) == pytest.approx((32 - 1 - u, v))
    assert out["meta"]["eval_crop"] == [2, 22, 2, 29]
    assert rec["image"][0, 0, 1] == 0 and T.hflip(out)["image"][0, 0, 1] == 0  # input untouched, involution


@pytest.mark.parametrize("size", [(13, 17), (48, 64), (7, 9), (24, 45)])
def test_resize_keeps_labels_exact_and_depth_unblended(size):
    rec = _record()
    out = T.resize(rec, size)
    assert out["image"].shape == (*size, 3) and out["image"].dtype == np.uint8
    for key in ("depth", "semantic"):
        assert out[key].shape == size
    # Labels: only values that were there, same dtype; nearest means each output pixel copies
    # the input pixel under its centre.
    assert out["semantic"].dtype == np.int32
    rows = np.minimum(((np.arange(size[0]) + 0.5) * 24 / size[0]).astype(int), 23)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * 32 / size[1]).astype(int), 31)
    np.testing.assert_array_equal(out["semantic"], rec["semantic"][np.ix_(rows, cols)])
    np.testing.assert_array_equal(out["instance_masks"], rec["instance_masks"][:, rows][:, :, cols])
    assert out["instance_masks"].dtype == bool
    # Depth: no value between the two planes (a blend would invent a surface), NaN stays NaN.
    d = out["depth"]
    assert set(np.unique(d[np.isfinite(d)]).tolist()) <= {1.0, 10.0}
    np.testing.assert_array_equal(np.isnan(d), np.isnan(rec["depth"])[np.ix_(rows, cols)])
    # Normals: every output vector is one of the inputs (unit or the invalid 0-vector).
    lengths = np.linalg.norm(out["normals"], axis=-1)
    assert np.all((np.abs(lengths - 1) < 1e-5) | (lengths == 0))


def test_linear_resize_would_blend_depth():
    """Guards the previous test's meaning: a bilinear resize of the same map does blend."""
    import cv2
    d = np.nan_to_num(_record()["depth"], nan=5.0)
    blended = cv2.resize(d, (17, 13), interpolation=cv2.INTER_LINEAR)
    assert np.any((blended > 1.0) & (blended < 10.0) & (blended != 5.0))


def test_resize_and_crop_update_intrinsics():
    rec = _record()
    point = (0.25, 0.1, 3.0)
    u, v = _project(rec["meta"]["intrinsics"], point)
    out = T.resize(rec, (48, 64))  # x2
    u2, v2 = _project(out["meta"]["intrinsics"], point)
    assert (u2, v2) == pytest.approx(((u + 0.5) * 2 - 0.5, (v + 0.5) * 2 - 0.5))
    c = T.crop(rec, 3, 5, 10, 12)
    u3, v3 = _project(c["meta"]["intrinsics"], point)
    assert (u3, v3) == pytest.approx((u - 5, v - 3))
    assert c["meta"]["eval_crop"] == [0, 10, 0, 12]
    # Dict intrinsics (NYUv2 style) keep their format.
    rec["meta"]["intrinsics"] = {"fx": 40.0, "fy": 40.0, "cx": 15.5, "cy": 11.5}
    assert T.crop(rec, 3, 5, 10, 12)["meta"]["intrinsics"] == {"fx": 40.0, "fy": 40.0, "cx": 10.5, "cy": 8.5}


def test_random_crop_uses_one_window_for_all_fields():
    rec = _record(48, 64)
    rng = np.random.default_rng(3)
    for _ in range(10):
        out = T.random_crop(rec, rng, scale=(0.2, 0.6))
        h, w = out["image"].shape[:2]
        # The image encodes coordinates: find the window from it, check the other fields match.
        top = int(np.argmin(np.abs(rec["image"][:, 0, 0].astype(int) - int(out["image"][0, 0, 0]))))
        left = int(np.argmin(np.abs(rec["image"][0, :, 1].astype(int) - int(out["image"][0, 0, 1]))))
        np.testing.assert_array_equal(out["semantic"], rec["semantic"][top:top + h, left:left + w])
        np.testing.assert_array_equal(out["depth"], rec["depth"][top:top + h, left:left + w])
        np.testing.assert_array_equal(out["instance_masks"], rec["instance_masks"][:, top:top + h, left:left + w])
        assert 0.15 * 48 * 64 <= h * w <= 0.65 * 48 * 64


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("size", [(16, 16), (20, 40), (64, 48)])
def test_fit_reaches_exact_shape(mode, size):
    out = T.fit(_record(), size, mode=mode)
    assert out["image"].shape == (*size, 3)
    assert out["depth"].shape == out["semantic"].shape == size
    assert out["instance_masks"].shape == (2, *size)
    if mode == "pad":
        t, b, l, r = out["meta"]["valid_box"]
        outside = np.ones(size, bool)
        outside[t:b, l:r] = False
        assert np.isnan(out["depth"][outside]).all()
        assert (out["semantic"][outside] == -1).all()
        assert (out["image"][outside] == 0).all()
        assert not out["instance_masks"][:, outside].any()
        assert (out["normals"][outside] == 0).all()


def test_prepare_is_deterministic_given_rng():
    rec = _record(48, 64)
    a = T.prepare(rec, np.random.default_rng(5), (16, 16), crop_scale=(0.3, 1.0), flip_prob=0.5)
    b = T.prepare(rec, np.random.default_rng(5), (16, 16), crop_scale=(0.3, 1.0), flip_prob=0.5)
    for key in ("image", "semantic", "normals"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(np.isnan(a["depth"]), np.isnan(b["depth"]))


def test_generation_record_resizes_target_like_image():
    img = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    rec = {"prompt": "draw", "target": img, "meta": {}}
    out = T.fit(rec, (16, 16))
    assert out["target"].shape == (16, 16, 3) and "image" not in out


def test_errors_name_the_field():
    rec = _record()
    rec["depth"] = rec["depth"][:-1]
    with pytest.raises(ValueError, match=r"field 'depth' is 23x32 but 'image' is 24x32"):
        T.resize(rec, (8, 8))
    rec = _record()
    rec["flow"] = np.zeros((24, 32, 2))
    with pytest.raises(ValueError, match=r"unknown array field 'flow'"):
        T.hflip(rec)
    with pytest.raises(ValueError, match="does not fit"):
        T.crop(_record(), 20, 0, 10, 10)
    with pytest.raises(ValueError, match="fit mode"):
        T.fit(_record(), (8, 8), mode="stretch")


def test_swap_left_right():
    assert T.swap_left_right("LEFT of the Right cup, leftmost") == "RIGHT of the Left cup, rightmost"
    assert T.swap_left_right("cleft rightful") == "cleft rightful"
