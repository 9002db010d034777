"""Normal readers against DSINE's and Marigold's readers (fixtures written from their code).

DSINE (baegwangbin/DSINE, data/datasets/*/__init__.py): `{scene}/{id}_img.png|jpg`, normals
read with `cv2.imread(..., IMREAD_UNCHANGED)` then BGR -> RGB, and
  nyuv2, scannet: `_normal.png` 8-bit, mask sum > 0, n = v / 255 * 2 - 1
  vkitti:         `_normal.png` 16-bit, mask sum > 0, n = v / 65535 * 2 - 1
  ibims, sintel:  `_normal.exr` float, mask |n| > 0.5, n as stored
in DSINE's axes (x left, y up, z toward the camera). Marigold (src/dataset/base_normals_dataset.py):
"img normal" lines, `np.load(normal)` (H, W, 3) in its own axes (x right, y up, z toward the
viewer), valid where |n| > 0 (util/metric.py compute_cosine_error).
"""

import cv2
import numpy as np
import OpenEXR
import pytest

from data_mix import sources
from eval import normals as normals_eval

K = np.array([[559.6, 0, 326.0], [0, 559.6, 244.0], [0, 0, 1]], np.float32)


def _random_vectors(rng, h, w):
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.2                      # facing the camera
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def _dsine_to_vb(n, valid):
    """DSINE axes -> ours (x flipped), zero where DSINE's mask is off."""
    out = n * np.array([-1, 1, 1], np.float32)
    out = out / np.maximum(np.linalg.norm(out, axis=2, keepdims=True), 1e-12)
    return np.where(valid[..., None], out, 0).astype(np.float32)


def _write_exr(path, n, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {c: np.ascontiguousarray(n[..., i].astype(dtype)) for i, c in enumerate("RGB")}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      channels) as f:
        f.write(str(path))


def _write_dsine_exr_item(root, stem, rng, h, w, dtype=np.float32):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    (root / stem).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / f"{stem}_img.png"), image[..., ::-1].copy())
    n = _random_vectors(rng, h, w)
    n[0, :3] = 0.0                                           # no ground truth
    n[1, :3] *= 0.3                                          # short vectors: DSINE masks |n| <= 0.5
    _write_exr(root / f"{stem}_normal.exr", n, dtype)
    np.save(root / f"{stem}_intrins.npy", K)
    stored = n.astype(dtype).astype(np.float32)
    return image, stored, np.linalg.norm(stored, axis=2) > 0.5


@pytest.fixture()
def ibims_dsine(tmp_path):
    """dsine_eval/ibims as DSINE ships it: ibims/{name}_{img.png,normal.exr,intrins.npy}."""
    rng = np.random.default_rng(10)
    root = tmp_path / "dsine_eval" / "ibims"
    items = {}
    for name in ("corridor_01", "office_03"):
        items[f"ibims/{name}"] = _write_dsine_exr_item(root, f"ibims/{name}", rng, 24, 32)
    split = root / "split" / "ibims.txt"
    split.parent.mkdir()
    split.write_text("".join(f"{k}_img.png\n" for k in items))
    return root, split, items


def test_ibims1_as_dsine_reads(ibims_dsine):
    root, split, items = ibims_dsine
    src = sources.DSINENormalsSource(root, split_file=split, dataset="ibims1")
    assert [r["meta"]["id"] for r in src] == list(items)
    for r, (image, stored, valid) in zip(src, items.values(), strict=True):
        np.testing.assert_array_equal(r["image"], image)
        np.testing.assert_allclose(r["normals"], _dsine_to_vb(stored, valid), atol=1e-6)
        assert r["meta"]["normals_format"] == "exr" and r["meta"]["intrinsics"]["fx"] == pytest.approx(559.6)


def test_sintel_as_dsine_reads(tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "sintel"
    image, stored, valid = _write_dsine_exr_item(root, "alley_1/frame_0001", rng, 12, 16, np.float16)
    r = sources.DSINENormalsSource(root)[0]                  # no split file: the glob
    assert r["meta"]["id"] == "alley_1/frame_0001"
    np.testing.assert_allclose(r["normals"], _dsine_to_vb(stored, valid), atol=1e-6)


@pytest.mark.parametrize("dataset,bits,ext", [("nyuv2", 8, "png"), ("scannet", 8, "png"),
                                              ("vkitti", 16, "jpg")])
def test_png_normals_as_dsine_reads(tmp_path, dataset, bits, ext):
    rng = np.random.default_rng(12)
    h, w = 12, 16
    stem = {"nyuv2": "test/000000", "scannet": "scene0001_00/000000", "vkitti": "Scene01/000000"}[dataset]
    root = tmp_path / dataset
    (root / stem).parent.mkdir(parents=True)
    assert cv2.imwrite(str(root / f"{stem}_img.{ext}"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    top = 2 ** bits - 1
    rgb = np.round((_random_vectors(rng, h, w) + 1) / 2 * top).astype(np.uint8 if bits == 8 else np.uint16)
    rgb[-1] = 0                                               # all-zero = invalid
    assert cv2.imwrite(str(root / f"{stem}_normal.png"), rgb[..., ::-1].copy())
    np.save(root / f"{stem}_intrins.npy", K)
    r = sources.DSINENormalsSource(root)[0]
    dsine = cv2.cvtColor(cv2.imread(str(root / f"{stem}_normal.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    mask = np.sum(dsine, axis=2) > 0
    n = dsine.astype(np.float32) / top * 2.0 - 1.0
    np.testing.assert_allclose(r["normals"], _dsine_to_vb(n, mask), atol=1e-6)


def test_ibims1_as_marigold_reads(tmp_path):
    """Marigold's ibims/ibims folder: {name}_img.png + {name}_normal.npy, listed in pairs."""
    rng = np.random.default_rng(13)
    h, w = 12, 16
    root = tmp_path / "ibims" / "ibims"
    root.mkdir(parents=True)
    assert cv2.imwrite(str(root / "corridor_01_img.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    n = _random_vectors(rng, h, w)
    n[0, :5] = 0.0
    np.save(root / "corridor_01_normal.npy", n)
    listing = tmp_path / "ibims_test.txt"
    listing.write_text("corridor_01_img.png corridor_01_normal.npy\n")
    r = sources.DSINENormalsSource(root, split_file=listing)[0]
    assert r["meta"]["normals_format"] == "npy"
    np.testing.assert_allclose(r["normals"], np.where((np.linalg.norm(n, axis=2) > 0)[..., None], n, 0),
                               atol=1e-6)


def test_eval_normals_ibims1_scores_a_dsine_exr_tree(ibims_dsine, tmp_path):
    root, split, items = ibims_dsine
    rng = np.random.default_rng(14)
    perfect, noisy = tmp_path / "perfect", tmp_path / "noisy"
    errors = []
    for key, (_, stored, valid) in items.items():
        for folder in (perfect, noisy):
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
        np.save(perfect / f"{key}.npy", stored)                         # DSINE axes, as stored
        pred = stored + rng.normal(0, 0.2, stored.shape).astype(np.float32)
        np.save(noisy / f"{key}.npy", pred)
        gt = _dsine_to_vb(stored, valid)[valid]
        p = pred[valid] / np.linalg.norm(pred[valid], axis=1, keepdims=True) * [-1, 1, 1]
        errors.append(np.degrees(np.arccos(np.clip(np.sum(p * gt, axis=1), -1, 1))))
    entries = normals_eval.main(["--dataset", "ibims1", "--dsine-root", str(root), "--dsine-split", str(split),
                                 "--predictions", str(perfect), "--name", "ours", "--convention", "dsine",
                                 "--baseline", f"noisy={noisy}", "--out", str(tmp_path / "out"),
                                 "--no-progress", "--worst", "0"])
    assert entries["ours"]["result"]["pooled"]["mean"] == pytest.approx(0.0, abs=0.05)
    assert entries["noisy"]["result"]["pooled"]["mean"] == pytest.approx(np.concatenate(errors).mean(), rel=1e-3)
    assert entries["noisy"]["result"]["num_images"] == 2


def test_eval_normals_diode_report_states_the_unverified_axes(tmp_path):
    rng = np.random.default_rng(15)
    h, w = 12, 16
    stem = "val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010"
    (tmp_path / stem).parent.mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / f"{stem}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    np.save(tmp_path / f"{stem}_depth.npy", rng.uniform(1, 5, (h, w, 1)).astype(np.float32))
    np.save(tmp_path / f"{stem}_depth_mask.npy", np.ones((h, w), np.float32))
    n = _random_vectors(rng, h, w)
    np.save(tmp_path / f"{stem}_normal.npy", n)
    (tmp_path / "preds").mkdir()
    np.save(tmp_path / "preds" / "00019_00183_indoors_000_010.npy", n)
    out = tmp_path / "out"
    entries = normals_eval.main(["--dataset", "diode", "--diode-root", str(tmp_path), "--predictions",
                                 str(tmp_path / "preds"), "--name", "ours", "--out", str(out),
                                 "--no-progress", "--worst", "0"])
    assert entries["ours"]["result"]["pooled"]["mean"] == pytest.approx(0.0, abs=0.05)
    assert "does not document the axes" in (out / "report.md").read_text()
    assert "does not document the axes" in (out / "results.json").read_text()
