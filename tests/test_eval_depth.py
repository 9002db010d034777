"""python -m eval.depth on dataset fixtures: perfect, perturbed, PNG, aligned and low-resolution
predictions against the metric computed directly; KITTI crops; every dataset reader; errors."""

import json
import pathlib
import subprocess
import sys

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest

from eval import depth as depth_eval
from eval.metrics.depth import DepthEvaluator
from eval.metrics.depth_presets import kitti_benchmark_crop

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
    return depth_eval.main([*map(str, args), "--no-progress"])


def _save(folder: pathlib.Path, key: str, array, ext=".npy"):
    path = folder / f"{key}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npy":
        np.save(path, np.asarray(array, np.float32))
    else:
        cv2.imwrite(str(path), array)
    return path


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    data = fx.write_nyuv2(root, n=3, size=(480, 640), test_indices=(1, 3))
    rng = np.random.default_rng(0)
    gts, noisy = [], []
    for k in data["test"]:
        gt = data["depths"][k - 1]
        key = f"{k:04d}"
        gts.append(gt)
        noisy.append(gt * rng.uniform(0.8, 1.25, gt.shape).astype(np.float32))
        _save(root / "perfect", key, gt)
        _save(root / "noisy", key, noisy[-1])
        _save(root / "png", key, np.round(noisy[-1] * 1000).astype(np.uint16), ".png")
        _save(root / "affine", key, 0.5 * gt + 0.3)
        _save(root / "half", key, gt[::2, ::2])
    return {"root": root, "data": data, "gts": gts, "noisy": noisy}


def _nyu_args(nyu) -> list:
    return ["--nyuv2-mat", nyu["data"]["mat"], "--nyuv2-splits", nyu["data"]["splits"]]


def _direct(gts, preds, preset="nyuv2", alignment="none"):
    ev = DepthEvaluator(preset, alignment)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        ev.add(p, g, name=str(i))
    return ev.result()["metrics"]


def test_nyuv2_perfect_perturbed_png_and_aligned(nyu, tmp_path):
    root, out = nyu["root"], tmp_path / "out"
    entries = _run(["--dataset", "nyuv2", *_nyu_args(nyu), "--predictions", root / "perfect",
                    "--name", "ours", "--baseline", f"noisy={root / 'noisy'}",
                    "--baseline", f"png={root / 'png'}", "--baseline", f"affine={root / 'affine'}",
                    "--png-scale", "png=1000",
                    "--alignment", "affine=least_squares", "--out", out, "--worst", "2"])
    ours = entries["ours"]["result"]["metrics"]
    assert ours["abs_rel"] == 0.0 and ours["delta1"] == 1.0 and ours["rmse"] == 0.0
    assert entries["ours"]["result"]["num_images"] == 2
    noisy = entries["noisy"]["result"]["metrics"]
    assert noisy == pytest.approx(_direct(nyu["gts"], nyu["noisy"]), abs=1e-12)
    quantized = [np.round(n * 1000).astype(np.uint16).astype(np.float32) / 1000 for n in nyu["noisy"]]
    assert entries["png"]["result"]["metrics"] == pytest.approx(_direct(nyu["gts"], quantized), abs=1e-12)
    affine = entries["affine"]["result"]
    assert affine["alignment"] == "least_squares" and affine["metrics"]["abs_rel"] < 1e-5
    assert affine["per_image"][0]["scale"] == pytest.approx(2.0, rel=1e-5)
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["noisy"]["result"]["metrics"]["delta1"] == noisy["delta1"]
    md = (out / "report.md").read_text()
    delta1 = entries["noisy"]["result"]["metrics"]["delta1"]
    assert f"| **noisy** | {delta1:.3f} |" in md
    assert "| Vision Banana | 0.948 | 0.0810 |" in md and "| MoGe-2 | 0.961 | 0.0733 |" in md
    assert "Alignment: ours: none, noisy: none, png: none, affine: least_squares" in md
    for name in ("chart_metrics", "worst_ours", "worst_noisy", "worst_affine"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name


def test_low_resolution_predictions_are_upsampled_bilinearly(nyu, tmp_path):
    from eval.predictions import resize_depth

    root = nyu["root"]
    entries = _run(["--dataset", "nyuv2", *_nyu_args(nyu),
                    "--predictions", root / "half",
                    "--out", tmp_path, "--worst", "0"])
    ups = [resize_depth(g[::2, ::2], g.shape) for g in nyu["gts"]]
    assert entries["half"]["result"]["metrics"] == pytest.approx(_direct(nyu["gts"], ups), abs=1e-12)


def test_missing_and_misnamed_files_and_png_without_scale(nyu, tmp_path):
    root = nyu["root"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001.npy").write_bytes((root / "perfect" / "0001.npy").read_bytes())
    (broken / "3.npy").write_bytes((root / "perfect" / "0003.npy").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"model 'broken': no prediction for '0003': expected file "
                                                rf"{broken}/0003\{{.npy,.png\}}.*found instead: 3.npy"):
        _run(["--dataset", "nyuv2", *_nyu_args(nyu),
              "--predictions", broken, "--out", tmp_path])
    with pytest.raises(ValueError, match="PNG depth needs --png-scale"):
        _run(["--dataset", "nyuv2", *_nyu_args(nyu),
              "--predictions", root / "png",
              "--out", tmp_path])
    with pytest.raises(SystemExit):
        _run(["--dataset", "kitti", "--predictions", root / "png", "--out", tmp_path])  # no KITTI paths


def test_kitti_full_frames_and_benchmark_crops(tmp_path):
    data = fx.write_kitti(tmp_path / "kitti")
    with_depth = [f for f in data["frames"] if f["depth"] is not None]
    gts, noisy = [], []
    rng = np.random.default_rng(1)
    for f in with_depth:
        gt = f["depth"]
        full = np.nan_to_num(gt, nan=5.0)
        n = full * rng.uniform(0.9, 1.1, full.shape).astype(np.float32)
        _save(tmp_path / "full", f["id"], n)
        _save(tmp_path / "cropped", f["id"], kitti_benchmark_crop(n))
        gts.append(kitti_benchmark_crop(gt))
        noisy.append(kitti_benchmark_crop(n))
    paths = ["--kitti-raw", data["raw_root"], "--kitti-depth", data["depth_root"],
             "--kitti-split", data["split_files"]["bts"]]
    entries = _run(["--dataset", "kitti", *paths, "--predictions", tmp_path / "full",
                    "--baseline", f"cropped={tmp_path / 'cropped'}", "--out", tmp_path / "out",
                    "--worst", "1"])
    direct = _direct(gts, noisy, preset="kitti_eigen")
    assert entries["full"]["result"]["metrics"] == pytest.approx(direct, abs=1e-12)
    assert entries["cropped"]["result"]["metrics"] == pytest.approx(direct, abs=1e-12)
    garg = _run(["--dataset", "kitti", *paths, "--predictions", tmp_path / "full", "--kitti-crop", "garg",
                 "--out", tmp_path / "garg", "--worst", "0"])
    assert garg["full"]["result"]["preset"]["crop"] == "garg"
    assert "| Depth Anything 3 | 0.953 | 0.0860 |" in (tmp_path / "garg" / "report.md").read_text()


@pytest.mark.parametrize("dataset", ["diode", "eth3d", "ibims1", "scannet"])
def test_other_datasets_score_perfect_predictions(dataset, tmp_path):
    from data_mix import sources

    root = tmp_path / "data"
    if dataset == "diode":
        fx.write_diode(root)
        args, src = ["--diode-root", root], sources.DIODESource(root, "val")
    elif dataset == "eth3d":
        fx.write_eth3d(root)
        args, src = ["--eth3d-root", root], sources.ETH3DSource(root)
    elif dataset == "ibims1":
        fx.write_ibims(root, size=(480, 640))
        args, src = ["--ibims-root", root / "ibims1_core_mat"], sources.IBimsSource(root / "ibims1_core_mat")
    else:
        fx.write_scannet(root)
        args, src = ["--scannet-root", root], sources.ScanNetSource(root)
    for record in src:
        _save(tmp_path / "perfect", record["meta"]["id"], np.nan_to_num(record["depth"], nan=1.0))
    entries = _run(["--dataset", dataset, *args, "--predictions", tmp_path / "perfect",
                    "--out", tmp_path / "out", "--worst", "1"])
    metrics = entries["perfect"]["result"]["metrics"]
    assert metrics["abs_rel"] == 0.0 and metrics["delta1"] == 1.0
    assert entries["perfect"]["result"]["num_images"] == len(src)
    md = (tmp_path / "out" / "report.md").read_text()
    assert ("| Vision Banana |" in md) == (dataset != "scannet")


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.depth", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--png-scale" in out.stdout and "2011_09_26_drive_0002_sync/image_02/0000000069" in out.stdout
