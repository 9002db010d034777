"""Surface normal codec: encoding, exact decoding, frame converters and robustness."""

import json

import cv2
import numpy as np
import pytest
from test_depth import jpeg

from tasks import normals


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between unit vectors (..., 3), degrees (float64)."""
    cos = np.clip((a.astype(np.float64) * b).sum(-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def smooth_normals(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float32 (h, w, 3) unit normals of a smooth bumpy surface facing the camera (0-70 deg)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (x - w / 2) / (h / 2), (h / 2 - y) / (h / 2)           # y up
    gx = np.full_like(x, rng.uniform(-0.5, 0.5))                   # a tilted plane ...
    gy = np.full_like(y, rng.uniform(-0.5, 0.5))
    for _ in range(12):                                            # ... with Gaussian bumps
        cx, cy = rng.uniform(-w / h, w / h), rng.uniform(-1, 1)
        s, amp = rng.uniform(0.1, 0.5), rng.uniform(-0.6, 0.6)
        g = amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
        gx -= g * (x - cx) / (s * s)
        gy -= g * (y - cy) / (s * s)
    n = np.stack([-gx, -gy, np.ones_like(x)], -1)
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


def fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


def test_encoding_formula_and_named_directions():
    n = np.array([[-1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, -1, 0]], np.float32)
    np.testing.assert_array_equal(normals.encode(n), [[255, 128, 128], [128, 255, 128],
                                                      [128, 128, 255],
                                                      [0, 128, 128], [128, 0, 128]])
    rgb = normals.encode(fibonacci_sphere(1000))
    x, y, z = fibonacci_sphere(1000).T
    want = np.stack([(1 - x) / 2, (1 + y) / 2, (1 + z) / 2], -1) * 255
    np.testing.assert_allclose(rgb, want, atol=0.5 + 1e-9)


def test_round_trip_error_under_0_4_degrees():
    n = fibonacci_sphere(400_000)
    back = normals.decode(normals.encode(n))
    err = angle_deg(back, n)
    print(f"clean round trip: max {err.max():.3f} deg, mean {err.mean():.3f} deg")
    assert err.max() <= 0.4
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1, atol=2e-7)


def test_invalid_normals():
    n = np.array([[0, 0, 0], [np.nan, 0, 1], [0.1, 0.1, 0.1], [np.inf, 0, 0], [0, 0, 3.0]],
                 np.float32)
    np.testing.assert_array_equal(normals.valid_mask(n), [False, False, False, False, True])
    rgb = normals.encode(n)
    assert (rgb[:4] == 128).all() and (rgb[4] == [128, 128, 255]).all()   # any length is fine
    np.testing.assert_array_equal(normals.rgb_valid_mask(rgb), [False] * 4 + [True])
    np.testing.assert_array_equal(normals.decode(rgb)[:4], np.tile(normals.FALLBACK, (4, 1)))


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (11, 1, 3), (33, 19, 3), (2, 3, 5, 3),
                                   (17, 3), (0, 4, 3), (4, 0, 3),
                                   (1201, 997, 3)])
def test_decode_any_uint8_image(shape):
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    n = normals.decode(rgb)
    assert n.dtype == np.float32 and n.shape == shape
    if n.size:
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1, atol=3e-7)
    np.testing.assert_array_equal(normals.decode(np.repeat(rgb, 2, axis=-2)[..., ::2, :]), n)


def test_decode_rejects_wrong_input():
    with pytest.raises(TypeError, match="float64"):
        normals.decode(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        normals.decode(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        normals.encode(np.zeros((2, 2)))


def test_opencv_and_dsine_frames():
    # Outward normals of a floor, a wall to the right and a wall facing the camera.
    ours = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], np.float64)
    opencv = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]], np.float64)       # y down, z forward
    np.testing.assert_array_equal(normals.from_opencv(opencv), ours)
    np.testing.assert_array_equal(normals.to_opencv(ours), opencv)
    # DSINE orients plane normals so that n . p > 0 for the plane's points p (OpenCV camera
    # coordinates; plane_svd.py): floor y = 1.5, right wall x = 2, frontal wall z = 5.
    points = np.array([[0.3, 1.5, 4.0], [2.0, -0.2, 3.0], [0.1, 0.2, 5.0]])
    dsine = np.abs(opencv) * np.sign((np.abs(opencv) * points).sum(1, keepdims=True))
    assert ((dsine * points).sum(1) > 0).all()
    np.testing.assert_array_equal(normals.from_dsine(dsine), ours)
    np.testing.assert_array_equal(normals.to_dsine(ours), dsine)
    # DSINE's PNGs store (n + 1) / 2 * 255 of its vectors: the same image as ours.
    n = fibonacci_sphere(5000)
    dsine_png = np.rint((normals.to_dsine(n) + 1) / 2 * 255).astype(np.uint8)
    np.testing.assert_array_equal(dsine_png, normals.encode(n))


def test_omnidata_frame():
    # Omnidata's annotator: Blender camera-space normal (x right, y up, z to camera) -> n/2+1/2,
    # red inverted. Its vectors are 2 * rgb - 1 of that image.
    n = fibonacci_sphere(5000)
    png = np.stack([1 - (n[:, 0] / 2 + 0.5), n[:, 1] / 2 + 0.5, n[:, 2] / 2 + 0.5], -1)
    np.testing.assert_allclose(normals.encode(n), png * 255, atol=0.5 + 1e-9)
    np.testing.assert_allclose(normals.from_omnidata(2 * png - 1), n, atol=1e-12)
    np.testing.assert_array_equal(normals.to_omnidata(normals.from_omnidata(png)), png)


def test_robust_to_gaussian_noise():
    rng = np.random.default_rng(4)
    n = smooth_normals(384, 512, rng)
    rgb = normals.encode(n)
    noisy = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).round().astype(np.uint8)
    err = angle_deg(normals.decode(noisy), n)
    print(f"noise sigma 4: mean {err.mean():.3f} deg, median {np.median(err):.3f} deg")
    assert err.mean() <= 3.0


def test_robust_to_jpeg_420():
    n = smooth_normals(384, 512, np.random.default_rng(5))
    err = angle_deg(normals.decode(jpeg(normals.encode(n), 90)), n)
    print(f"JPEG q90 4:2:0: mean {err.mean():.3f} deg, "
          f"99th percentile {np.percentile(err, 99):.3f} deg")
    assert err.mean() <= 1.0


def test_prompts():
    rng = np.random.default_rng(0)
    prompts = {normals.render_prompt(rng) for _ in range(50)}
    assert len(prompts) >= 3 and all("normal" in p for p in prompts)
    assert normals.parse_prompt("Generate a surface normal map of the input image.") == {}


def test_real_outputs(real_outputs):
    manifest = json.loads((real_outputs / "manifest.json").read_text())
    entries = [e for e in manifest if e["task"] == "normals"]
    assert entries
    for e in entries:
        bgr = cv2.imread(str(real_outputs / e["output"]), cv2.IMREAD_COLOR)
        assert bgr is not None, e["output"]
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        n = normals.decode(rgb, **normals.parse_prompt(e["prompt"]))
        valid = normals.rgb_valid_mask(rgb)
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1, atol=3e-7)
        off_axis = np.degrees(np.arccos(np.clip(n[..., 2], -1, 1)))[valid]
        print(f"{e['output']}: valid {valid.mean():.2%}, "
              f"mean angle from the camera axis {off_axis.mean():.1f} deg, "
              f"facing the camera (z > 0) {np.mean(n[valid][:, 2] > 0):.1%}")
        assert valid.mean() > 0.95 and np.mean(n[valid][:, 2] > 0) > 0.8
