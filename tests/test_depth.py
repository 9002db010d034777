"""Depth codec: the power transform, the colour paths, exact decoding and robustness.

`depth_scene` and `delta1` are also used by the normals and jax codec tests.
"""

import json

import cv2
import numpy as np
import pytest

from tasks import colormaps, depth

LEVELS = 1785  # 8-bit steps along the rainbow path


def depth_scene(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A street-like float32 (h, w) depth map in metres with hard edges, 0.5..80 m.

    Ground plane seen from 1.6 m (depth ~ 1 / rows below the horizon), a far wall at 80 m,
    and 14 boxes whose fronts slant across the image, each occluding what is behind it.
    """
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    v, u = (rows + 0.5) / h, (cols + 0.5) / w
    d = np.where(v > 0.35, 0.55 / np.maximum(v - 0.35, 1e-6), 80.0)
    for _ in range(14):
        cu, cv_ = rng.uniform(0, 1), rng.uniform(0.2, 1)
        bw, bh = rng.uniform(0.03, 0.3), rng.uniform(0.05, 0.4)
        z = np.exp(rng.uniform(np.log(0.5), np.log(60)))
        box = (np.abs(u - cu) < bw / 2) & (np.abs(v - cv_) < bh / 2)
        front = z * (1 + rng.uniform(-0.4, 0.4) * (u - cu) / bw)
        d = np.where(box & (front < d), front, d)
    return np.clip(d, 0.5, 80.0).astype(np.float32)


def delta1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of pixels with max(p/g, g/p) < 1.25 (p = +inf counts as wrong)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(pred / gt, gt / pred)
    return float(np.mean(ratio < 1.25))


def levels_of(d: np.ndarray) -> np.ndarray:
    """Continuous rainbow level (0..1785) of metric depth."""
    return depth.transform(d) * LEVELS


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip with OpenCV defaults (4:2:0 chroma subsampling)."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def test_transform_is_the_paper_formula_by_default():
    d = np.array([0.0, 0.3, 1.0, 10.0, 80.0, 1e4])
    np.testing.assert_allclose(depth.transform(d), 1 - (1 + d / 10) ** -2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(depth.inverse_transform(depth.transform(d)), d, rtol=1e-9)


def test_transform_is_barrons_with_exponent_lambda_plus_one():
    # Barron's P(x, l) = |l-1|/l ((x/|l-1| + 1)^l - 1); f(d) = P(d/c, lam+1) / P(inf, lam+1).
    d = np.linspace(0, 200, 101)
    for lam, c in [(-3.0, 10 / 3), (-2.5, 4.0), (-5.0, 1.0)]:
        l = lam + 1
        barron = abs(l - 1) / l * (((d / c) / abs(l - 1) + 1) ** l - 1)
        limit = abs(l - 1) / abs(l)
        np.testing.assert_allclose(depth.transform(d, lam, c), barron / limit, atol=1e-12)


def test_cube_corners_decode_to_the_papers_depths():
    corners = np.array([[0, 0, 0], [255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255],
                        [0, 0, 255], [255, 0, 255], [255, 255, 255]], np.uint8)
    got = depth.decode(corners[None])[0]
    assert [round(float(x), 2) for x in got[:6]] == [0.0, 0.80, 1.83, 3.23, 5.28, 8.71]
    assert round(float(got[6]), 1) == 16.5 and got[7] == np.inf


def test_every_rainbow_level_round_trips_exactly():
    t = np.arange(LEVELS + 1) / LEVELS
    rgb = colormaps.rgb_at(t, "rainbow")
    assert len(np.unique(rgb, axis=0)) == LEVELS + 1            # 1786 distinct path points
    steps = np.abs(np.diff(rgb.astype(int), axis=0)).sum(1)
    assert (steps == 1).all()                                   # one channel, one step each
    want = depth.inverse_transform(t).astype(np.float32)
    np.testing.assert_array_equal(depth.decode(rgb[None])[0], want)


def test_clean_round_trip_within_half_a_level():
    d = np.geomspace(0.1, 500, 200_000)
    back = depth.decode(depth.encode(d[None]))[0].astype(np.float64)
    err_levels = np.abs(levels_of(back) - levels_of(d))
    assert err_levels.max() <= 0.5 + 1e-6
    rel = np.abs(back - d) / d
    at = {m: float(rel[np.abs(d - m) / m < 0.02].max()) for m in (1, 10, 80)}
    print(f"clean max relative error: 1 m {at[1]:.2e}, 10 m {at[10]:.2e}, 80 m {at[80]:.2e}; "
          f"max |level error| {err_levels.max():.3f}")
    assert at[1] < 3e-3 and at[10] < 1.2e-2 and at[80] < 6e-2


def test_invalid_depths_and_valid_mask():
    d = np.array([[np.nan, -1.0, 0.0, -np.inf, np.inf, 600.0, 2.0]])
    rgb = depth.encode(d)
    assert (rgb[0, :4] == 0).all() and (rgb[0, 4:6] == 255).all()
    back = depth.decode(rgb)
    assert (back[0, :4] == 0).all() and np.isinf(back[0, 4:6]).all()
    np.testing.assert_array_equal(depth.valid_mask(back), [[False] * 6 + [True]])
    np.testing.assert_array_equal(depth.valid_mask(d), [[False] * 5 + [True, True]])  # 600 m: valid


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (13, 1, 3), (31, 17, 3), (2, 5, 9, 3),
                                   (40, 3), (0, 5, 3), (5, 0, 3),
                                   (1531, 1029, 3)])
def test_decode_any_uint8_image(shape):
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    d = depth.decode(rgb)
    assert d.dtype == np.float32 and d.shape == shape[:-1]
    assert not np.isnan(d).any() and (d >= 0).all()
    strided = np.repeat(rgb, 2, axis=-2)[..., ::2, :]              # same pixels, not contiguous
    np.testing.assert_array_equal(depth.decode(strided), d)


def test_decode_rejects_wrong_input():
    with pytest.raises(TypeError, match="uint8"):
        depth.decode(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 4\)"):
        depth.decode(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        depth.decode(np.zeros(4, np.uint8))
    with pytest.raises(TypeError, match="list"):
        depth.decode([[[0, 0, 0]]])
    with pytest.raises(ValueError, match="colormap"):
        depth.decode(np.zeros((1, 1, 3), np.uint8), colormap="jet")
    with pytest.raises(ValueError, match="lam < -1"):
        depth.encode(np.ones((2, 2)), lam=-0.5)


def _rainbow_nearest_brute(colours: np.ndarray) -> np.ndarray:
    """Continuous nearest rainbow level by brute force over the 7 edges (float64)."""
    v = colormaps.vertices("rainbow")
    p = colours.astype(np.float64)[:, None, :]
    a, u = v[:-1][None], (v[1:] - v[:-1])[None]
    t = np.clip(((p - a) * u).sum(-1) / 255**2, 0, 1)
    d2 = ((p - a - t[..., None] * u) ** 2).sum(-1)
    k = d2.argmin(1)
    return 255 * k + 255 * t[np.arange(len(k)), k]


def test_rainbow_table_is_the_exact_nearest_point():
    rng = np.random.default_rng(0)
    colours = np.concatenate([rng.integers(0, 256, (200_000, 3)),
                              rng.choice([0, 1, 2, 127, 128, 253, 254, 255], (20_000, 3))])
    colours = colours.astype(np.uint8)
    table = colormaps.nearest_table("rainbow")
    got = table[colormaps.rgb_keys(colours)] / (colormaps.segment_resolution("rainbow") / 255)
    np.testing.assert_array_equal(got, _rainbow_nearest_brute(colours))


def test_robust_to_gaussian_noise():
    rng = np.random.default_rng(1)
    d = depth_scene(384, 768, rng)
    rgb = depth.encode(d)
    noisy = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).round().astype(np.uint8)
    back = depth.decode(noisy)
    within = np.mean(np.abs(levels_of(back) - levels_of(d)) <= 16)
    near = (d >= 0.5) & (d <= 20)
    print(f"noise sigma 4: within 16 levels {within:.5f}, "
          f"delta1 (0.5-20 m) {delta1(back[near], d[near]):.5f}")
    assert within >= 0.999
    assert delta1(back[near], d[near]) >= 0.999


def test_robust_to_jpeg_420():
    d = depth_scene(384, 768, np.random.default_rng(2))
    back = depth.decode(jpeg(depth.encode(d), 90))
    print(f"JPEG q90 4:2:0 (rgb metric): delta1 {delta1(back, d):.5f}")
    assert delta1(back, d) >= 0.99


@pytest.mark.slow
def test_ycbcr_metric_decodes_jpeg_better():
    d = depth_scene(384, 768, np.random.default_rng(2))
    rgb = depth.encode(d)
    j = jpeg(rgb, 90)
    plain, luma = depth.decode(j), depth.decode(j, metric="ycbcr")
    print(f"JPEG q90 delta1: rgb {delta1(plain, d):.5f}, ycbcr {delta1(luma, d):.5f}")
    assert delta1(luma, d) > delta1(plain, d) >= 0.99
    np.testing.assert_array_equal(depth.decode(rgb, metric="ycbcr"), depth.decode(rgb))  # clean


def test_colormap_control_points_are_matplotlibs():
    listed = pytest.importorskip("matplotlib._cm_listed")
    for name in ("plasma", "inferno", "viridis"):
        expected = np.array(getattr(listed, f"_{name}_data")) * 255.0
        np.testing.assert_allclose(colormaps.vertices(name), expected, rtol=0, atol=1e-9)


def test_gray_colormap_round_trip():
    d = np.geomspace(0.05, 300, 50_000)[None]
    rgb = depth.encode(d, colormap="gray")
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    back = depth.decode(rgb, colormap="gray")
    # 256 grey levels: half a level of t, i.e. 0.5/255 (about 1.5% at 10 m).
    assert np.abs(depth.transform(back) - depth.transform(d)).max() <= 0.5 / 255 + 1e-6


def _nearest_positions(colours: np.ndarray, name: str, metric: str = "rgb") -> np.ndarray:
    """Table positions of the nearest path points, by brute force over every segment (float64)."""
    m = colormaps.METRICS[metric]
    v = colormaps.vertices(name) @ m.T
    p = (colours.astype(np.float64) @ m.T)[:, None, :]
    a, u = v[:-1][None], (v[1:] - v[:-1])[None]
    t = np.clip(((p - a) * u).sum(-1) / (u**2).sum(-1), 0, 1)
    k = ((p - a - t[..., None] * u) ** 2).sum(-1).argmin(1)
    return np.rint((k + t[np.arange(len(k)), k]) * colormaps.segment_resolution(name))


@pytest.mark.parametrize("name", ["plasma", "inferno", "viridis"])
def test_listed_colormap_round_trip(name):
    # Encode, then decode by brute-force nearest point (the table is checked below, once).
    d = np.geomspace(0.05, 300, 20_000)
    rgb = depth.encode(d, colormap=name)
    t = _nearest_positions(rgb, name) / colormaps.resolution(name)
    err = np.abs(t - depth.transform(d)).max()
    print(f"{name}: max |t error| {err * 255:.3f} colormap steps")
    assert err <= 1.0 / 255


@pytest.mark.slow
@pytest.mark.parametrize("name, metric", [("viridis", "rgb"), ("rainbow", "ycbcr")])
def test_polyline_tables_are_the_exact_nearest_point(name, metric):
    # The octree-pruned builder against brute force; then decode() through the table.
    rng = np.random.default_rng(3)
    on_path = colormaps.rgb_at(rng.uniform(0, 1, 5000), name)
    colours = np.concatenate([rng.integers(0, 256, (30_000, 3)), on_path])
    table = colormaps.nearest_table(name, metric)
    np.testing.assert_array_equal(table[colormaps.rgb_keys(colours.astype(np.uint8))],
                                  _nearest_positions(colours, name, metric))
    d = np.geomspace(0.05, 300, 20_000)[None]
    back = depth.decode(depth.encode(d, colormap=name), colormap=name, metric=metric)
    assert np.abs(depth.transform(back) - depth.transform(d)).max() <= 1.0 / 255


@pytest.mark.parametrize("name", colormaps.NAMES)
def test_prompts_name_the_colormap(name):
    rng = np.random.default_rng(0)
    prompts = {depth.render_prompt(rng, colormap=name) for _ in range(60)}
    assert len(prompts) >= 3
    for p in prompts:
        assert depth.parse_prompt(p) == {"colormap": name}, p


def test_parse_prompt_defaults_to_rainbow():
    plain = "Generate a metric depth map of the input image."
    assert depth.parse_prompt(plain) == {"colormap": "rainbow"}
    assert depth.parse_prompt("Depth, visualized in GREYSCALE please")["colormap"] == "gray"
    assert depth.parse_prompt("a depth map using the Viridis colormap")["colormap"] == "viridis"


def test_real_outputs(real_outputs):
    manifest = json.loads((real_outputs / "manifest.json").read_text())
    entries = [e for e in manifest if e["task"] == "depth"]
    assert entries
    sky = 0
    for e in entries:
        bgr = cv2.imread(str(real_outputs / e["output"]), cv2.IMREAD_COLOR)
        assert bgr is not None, e["output"]
        spec = depth.parse_prompt(e["prompt"])
        assert spec == {"colormap": "rainbow"}, e["prompt"]
        d = depth.decode(np.ascontiguousarray(bgr[..., ::-1]), **spec)
        valid = depth.valid_mask(d)
        assert d.dtype == np.float32 and not np.isnan(d).any()
        median, inf_share = float(np.median(d[valid])), float(np.isinf(d).mean())
        print(f"{e['output']}: median {median:.2f} m, 5-95% {np.percentile(d[valid], 5):.2f}-"
              f"{np.percentile(d[valid], 95):.2f} m, sky (inf) {inf_share:.1%}")
        assert 0.2 < median < 100 and valid.mean() > 0.5
        sky += inf_share > 0.05
    assert sky >= 1    # white sky decodes to +inf
