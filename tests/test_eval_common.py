"""Shared pieces of the benchmark modules: prediction readers and resizers, predictions folders,
per-model options, letterboxing, report tables, reference numbers, paired-folder readers."""

import argparse
import json
import math

import cv2
import numpy as np
import pytest

from data_mix.sources.paired_folders import BinaryMaskFolderSource, decode_mask
from eval import cli, from_checkpoint, report
from eval import predictions as preds
from eval.references import REFERENCES, references_for
from tasks import normals as normals_codec
from tasks.instance import Instances


def _unit(rng, shape):
    n = rng.normal(size=shape + (3,)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.2
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def test_normal_conventions_agree_for_npy_and_png(tmp_path):
    n = _unit(np.random.default_rng(0), (6, 8))
    signs = {"vision_banana": (1, 1, 1), "opencv": (1, -1, -1), "dsine": (-1, 1, 1), "omnidata": (-1, 1, 1)}
    for conv, s in signs.items():
        np.save(tmp_path / f"{conv}.npy", n * np.asarray(s, np.float32))
        np.testing.assert_allclose(preds.read_normals(tmp_path / f"{conv}.npy", conv), n, atol=1e-6)
        # A Vision Banana PNG is our color encoding, the same image as DSINE's (v + 1) / 2.
        png_signs = signs["dsine" if conv == "vision_banana" else conv]
        png = np.round((n * np.asarray(png_signs, np.float32) + 1) / 2 * 65535).astype(np.uint16)
        cv2.imwrite(str(tmp_path / f"{conv}.png"), png[..., ::-1])
        np.testing.assert_allclose(preds.read_normals(tmp_path / f"{conv}.png", conv), n, atol=1e-4)
    # Our codec's 8-bit PNG reads back within its quantization.
    cv2.imwrite(str(tmp_path / "vb8.png"), normals_codec.encode(n)[..., ::-1])
    err = np.degrees(np.arccos(np.clip((preds.read_normals(tmp_path / "vb8.png") * n).sum(-1), -1, 1)))
    assert err.max() < 0.4
    np.save(tmp_path / "chw.npy", n.transpose(2, 0, 1))
    np.testing.assert_allclose(preds.read_normals(tmp_path / "chw.npy"), n, atol=1e-6)
    black = np.zeros((2, 2, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "black.png"), black)
    assert not preds.read_normals(tmp_path / "black.png").any()  # all-zero pixels: no prediction
    with pytest.raises(ValueError, match="unknown normal convention 'blender'"):
        preds.read_normals(tmp_path / "vb8.png", "blender")


def test_depth_and_mask_readers(tmp_path):
    d = np.random.default_rng(1).uniform(0.5, 9, (4, 5)).astype(np.float32)
    for name, arr in (("hw", d), ("hw1", d[..., None]), ("1hw", d[None])):
        np.save(tmp_path / f"{name}.npy", arr)
        np.testing.assert_array_equal(preds.read_depth(tmp_path / f"{name}.npy"), d)
    np.save(tmp_path / "int.npy", d.astype(np.int32))
    with pytest.raises(ValueError, match="expected a float"):
        preds.read_depth(tmp_path / "int.npy")
    cv2.imwrite(str(tmp_path / "d.png"), np.round(d * 256).astype(np.uint16))
    np.testing.assert_allclose(preds.read_depth(tmp_path / "d.png", 256), np.round(d * 256) / 256)
    with pytest.raises(ValueError, match="needs --png-scale"):
        preds.read_depth(tmp_path / "d.png")
    m = np.zeros((6, 6), bool)
    m[1:4, 2:5] = True
    cv2.imwrite(str(tmp_path / "01.png"), m.astype(np.uint8))
    cv2.imwrite(str(tmp_path / "255.png"), m.astype(np.uint8) * 255)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.repeat(m[..., None].astype(np.uint8) * 255, 3, 2))
    noisy = (m * 240 + 8).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noisy.png"), noisy)
    for name in ("01", "255", "rgb"):
        np.testing.assert_array_equal(preds.read_mask(tmp_path / f"{name}.png"), m)
    with pytest.raises(ValueError, match="found 2 other values"):  # lossless: 0 / 1 / 255 only
        preds.read_mask(tmp_path / "noisy.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        preds.read_mask(tmp_path / "none.png")


def test_resizing_rules():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    doubled = np.kron(labels, np.ones((2, 2), np.int32))
    np.testing.assert_array_equal(preds.resize_nearest(labels, (6, 8)), doubled)
    depth = np.array([[1.0, 2.0], [np.inf, 4.0]], np.float32)
    up = preds.resize_depth(depth, (4, 4))
    assert np.isinf(up[2:, :2]).all() and np.isfinite(up[:2]).all() and np.isfinite(up[2:, 2:]).all()
    assert up[np.isfinite(up)].max() <= 4.0 and up[np.isfinite(up)].min() >= 1.0  # nothing blended with inf
    n = _unit(np.random.default_rng(2), (4, 4))
    np.testing.assert_allclose(np.linalg.norm(preds.resize_normals(n, (8, 8)), axis=-1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="prediction p.png is 4x4 but the ground truth is 8x16"):
        preds.to_size(np.zeros((4, 4)), (8, 16), "nearest", "p.png")


def test_prediction_folder_errors_and_unused(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.zeros(2))
    cv2.imwrite(str(tmp_path / "a" / "x.png"), np.zeros((2, 2), np.uint8))
    np.save(tmp_path / "y.npy", np.zeros(2))
    np.save(tmp_path / "stray.npy", np.zeros(2))
    folder = preds.PredictionFolder(tmp_path, (".npy", ".png"), "model 'm'")
    with pytest.raises(FileNotFoundError, match=r"model 'm': 2 predictions for 'a/x' \(x.npy, x.png\)"):
        folder.path("a/x")
    assert folder.path("y") == tmp_path / "y.npy"
    assert folder.unused() == ["a/x", "stray"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"the folder holds no .npy file \(it has notes.txt\)"):
        preds.PredictionFolder(empty, (".npy",)).path("0001")
    with pytest.raises(FileNotFoundError, match="predictions folder .*nowhere does not exist"):
        preds.PredictionFolder(tmp_path / "nowhere", (".npy",))


def test_per_model_options(tmp_path):
    parser = cli.make_parser("eval.x", "test", "")
    parser.add_argument("--alignment", action=cli.PerModel, choices=("none", "median"), default="none")
    parser.add_argument("--scale", action=cli.PerModel, type=float, default=None)
    (tmp_path / "p").mkdir()
    (tmp_path / "b").mkdir()
    args = parser.parse_args(["--out", str(tmp_path), "--predictions", str(tmp_path / "p"),
                              "--baseline", f"marigold={tmp_path / 'b'}", "--alignment", "marigold=median",
                              "--scale", "256"])
    models = cli.models_from_args(parser, args, ("alignment", "scale"))
    assert [(m.name, m.kind) for m in models] == [("p", "predictions"), ("marigold", "predictions")]
    assert cli.per_model(args, "alignment", "marigold") == "median"
    assert cli.per_model(args, "alignment", "p") == "none"
    assert cli.per_model(args, "scale", "marigold") == 256.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o", "--alignment", "marigold=affine"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o", "--scale", "x=abc"])
    assert cli.limit_indices(5, None) == [0, 1, 2, 3, 4] and cli.limit_indices(5, 2) == [0, 1]
    info = cli.run_info(args, ["--out", "o"])
    assert info["argv"] == ["--out", "o"] and json.dumps(info)
    assert isinstance(args, argparse.Namespace)


def test_letterbox_round_trip():
    labels = np.random.default_rng(3).integers(-1, 19, (20, 40)).astype(np.int32)
    image = np.repeat(((labels + 1) * 12).astype(np.uint8)[..., None], 3, axis=2)
    canvas, box = from_checkpoint.letterbox(image, (16, 16))
    assert canvas.shape == (16, 16, 3) and box == (4, 12, 0, 16)
    assert not canvas[:4].any() and not canvas[12:].any()  # black bars
    model_labels = preds.resize_nearest(labels, (8, 16))
    full = np.zeros((16, 16), np.int32)
    full[4:12] = model_labels
    back = from_checkpoint.unletterbox(full, box, (20, 40), "semantic")
    np.testing.assert_array_equal(back, preds.resize_nearest(model_labels, (20, 40)))
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:8, :8] = True
    out = from_checkpoint.unletterbox(Instances(masks, np.ones(2, np.float32), np.zeros((2, 3), np.uint8)),
                                      box, (20, 40), "instance")
    assert out.masks.shape == (2, 20, 40) and out.masks[0, :10, :20].all() and not out.masks[0, 10:].any()
    depth = np.full((16, 16), 3.0, np.float32)
    assert from_checkpoint.unletterbox(depth, box, (20, 40), "depth").shape == (20, 40)


def test_report_tables_and_json(tmp_path):
    from eval.references import Reference

    models = {"ours": {"result": {"pooled": {"mean": 12.3456, "under_11.25": 40.0}, "per": {"mean": 13.0}}}}
    refs = [Reference("Paper", {"mean": 17.7}, "arXiv x", "note a|b")]
    cols = [report.Column(("pooled", "mean"), "mean", 2),
            report.Column(("pooled", "under_11.25"), "% < 11.25", 1),
            report.Column("per.mean", "per-image mean", 2)]
    table = report.results_table(models, cols, refs)
    assert "| **ours** | 12.35 | 40.0 | 13.00 | this run |" in table
    assert "| Paper | 17.70 | - | - | arXiv x (note a\\|b) |" in table  # the paper's mean fills one column
    payload = {"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2), "d": tmp_path}
    saved = report.write_json(tmp_path / "r.json", payload)
    assert json.loads(saved.read_text()) == {"a": None, "b": 1.5, "c": [0, 1], "d": str(tmp_path)}
    panels = [[np.zeros((4, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]]
    grid = report.image_grid(tmp_path / "g.png", panels, col_titles=["a", "b"],
                             row_titles=["row one\nsecond line"], title="T")
    image = cv2.imread(str(grid))
    assert image.shape[0] > 192 and image.shape[1] > 220 + 2 * 192
    heat = report.heatmap(np.array([[0.0, np.nan, 1.0]]), 1.0)
    assert heat.shape == (1, 3, 3) and (heat[0, 1] == 128).all()


def test_references_hold_the_published_numbers():
    assert {r.model: r.metrics["miou"] for r in references_for("cityscapes")}["SAM 3"] == 0.652
    nyu = {r.model: r.metrics for r in references_for("depth/nyuv2")}
    assert nyu["Vision Banana"] == {"delta1": 0.948, "abs_rel": 0.081} and nyu["MoGe-2"]["abs_rel"] == 0.0733
    assert "Depth Anything 3" not in {r.model for r in references_for("depth/ibims1")}  # "-" in the paper
    assert {r.model: r.metrics for r in references_for("normals/nyuv2")}["Lotus-2"] == {"mean": 16.9}
    assert references_for("coco_instances") == []
    for key, rows in REFERENCES.items():
        for r in rows:
            assert r.source.startswith("arXiv 2604.20329") and r.metrics, key
            assert all(isinstance(v, float) and math.isfinite(v) for v in r.metrics.values())


def test_paired_folder_readers(tmp_path):
    (tmp_path / "ISIC" / "images").mkdir(parents=True)
    (tmp_path / "ISIC" / "masks").mkdir()
    m = np.zeros((5, 7), np.uint8)
    m[1:3, 2:6] = 255
    cv2.imwrite(str(tmp_path / "ISIC" / "images" / "ISIC_0001.jpg"), np.zeros((5, 7, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "ISIC" / "masks" / "ISIC_0001_segmentation.png"), m)
    src = BinaryMaskFolderSource(tmp_path / "ISIC", mask_suffix="_segmentation", target="skin lesion")
    record = src[0]
    assert record["meta"]["id"] == "ISIC_0001" and record["meta"]["mask_name"] == "skin lesion"
    np.testing.assert_array_equal(record["mask"], m > 0)
    assert record["mask"].dtype == bool and record["image"].shape == (5, 7, 3)
    ok, png16 = cv2.imencode(".png", m.astype(np.uint16) * 257)
    np.testing.assert_array_equal(decode_mask(png16.tobytes(), "m16"), m > 0)
