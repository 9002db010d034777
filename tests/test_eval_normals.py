"""python -m eval.normals on the DSINE layout and the NYUv2 / DIODE / VKITTI2 readers: prediction
conventions (.npy and PNG), perturbed predictions against the metric computed directly, errors."""

import json
import pathlib
import subprocess
import sys

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest

from eval import normals as normals_eval
from eval.metrics.normals import NormalsEvaluator
from tasks import normals as codec

REPO = pathlib.Path(__file__).resolve().parents[1]
SIGNS = {"vision_banana": (1, 1, 1), "opencv": (1, -1, -1), "dsine": (-1, 1, 1), "omnidata": (-1, 1, 1)}


def _run(args):
    return normals_eval.main([*map(str, args), "--no-progress"])


def _save_npy(folder, key, array):
    path = folder / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array, np.float32))


def _save_png(folder, key, rgb):
    path = folder / f"{key}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _rotate(n, angle_deg):
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
    return n @ rot.T


@pytest.fixture(scope="module")
def dsine(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsine")
    data = fx.write_dsine_normals(root / "scannet", n=3, size=(12, 16))
    rng = np.random.default_rng(0)
    noisy = []
    for item in data["items"]:
        key, n = item["id"], item["normals"]
        for conv, signs in SIGNS.items():
            _save_npy(root / f"npy_{conv}", key, n * np.asarray(signs, np.float32))
        _save_png(root / "png_vb", key, codec.encode(n))                   # our encoding = DSINE's PNG
        cv_png = np.round((n * np.asarray(SIGNS["opencv"], np.float32) + 1) / 2 * 65535).astype(np.uint16)
        _save_png(root / "png_opencv16", key, cv_png)
        noisy.append(_rotate(n, rng.uniform(5, 20)))
        _save_npy(root / "noisy", key, noisy[-1])
        _save_npy(root / "half", key, n[::2, ::2])
    return {"root": root, "items": data["items"], "noisy": noisy}


def test_conventions_and_perturbed_predictions(dsine, tmp_path):
    root, out = dsine["root"], tmp_path / "out"
    args = ["--dataset", "scannet", "--dsine-root", root / "scannet",
            "--predictions", root / "npy_vision_banana", "--name", "ours", "--out", out, "--worst", "2",
            "--baseline", f"noisy={root / 'noisy'}"]
    for conv in ("opencv", "dsine", "omnidata"):
        args += ["--baseline", f"{conv}={root / f'npy_{conv}'}", "--convention", f"{conv}={conv}"]
    args += ["--baseline", f"png={root / 'png_vb'}", "--baseline", f"png16={root / 'png_opencv16'}",
             "--convention", "png16=opencv"]
    entries = _run(args)
    for name in ("ours", "opencv", "dsine", "omnidata"):
        pooled = entries[name]["result"]["pooled"]
        assert pooled["mean"] < 1e-3 and pooled["under_5"] == 100.0, name
    # 8-bit PNGs round-trip to within 0.4 degrees; 16-bit ones far better.
    assert entries["png"]["result"]["pooled"]["mean"] < 0.4
    assert entries["png16"]["result"]["pooled"]["mean"] < 0.01
    direct = NormalsEvaluator()
    for item, pred in zip(dsine["items"], dsine["noisy"], strict=True):
        direct.add(pred, item["normals"], name=item["id"])
    expected = direct.result()
    got = entries["noisy"]["result"]
    assert got["pooled"] == pytest.approx(expected["pooled"], abs=1e-4)
    assert got["per_image_mean"] == pytest.approx(expected["per_image_mean"], abs=1e-4)
    assert 5 < got["pooled"]["mean"] < 20
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["png16"]["convention"] == "opencv"
    md = (out / "report.md").read_text()
    assert f"| **noisy** | {got['pooled']['mean']:.3f} |" in md
    assert "| Vision Banana | 15.052 | 7.468 |" in md and "| DSINE | 16.200 | 8.300 |" in md
    for name in ("chart_errors", "chart_thresholds", "worst_ours", "worst_noisy"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name


def test_low_resolution_and_missing_files(dsine, tmp_path):
    from eval.predictions import resize_normals

    root = dsine["root"]
    entries = _run(["--dataset", "scannet", "--dsine-root", root / "scannet", "--predictions", root / "half",
                    "--out", tmp_path / "a", "--worst", "0"])
    direct = NormalsEvaluator()
    for item in dsine["items"]:
        n = item["normals"]
        direct.add(resize_normals(n[::2, ::2], n.shape[:2]), n, name=item["id"])
    assert entries["half"]["result"]["pooled"] == pytest.approx(direct.result()["pooled"], abs=1e-4)
    broken = tmp_path / "broken"
    (broken / "test").mkdir(parents=True)
    (broken / "test" / "000000.npy").write_bytes((root / "noisy" / "test" / "000000.npy").read_bytes())
    (broken / "000001.npy").write_bytes((root / "noisy" / "test" / "000001.npy").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no prediction for 'test/000001': expected file .*broken/"
                                                r"test/000001\{.npy,.png\}; found instead: 000001.npy"):
        _run(["--dataset", "scannet", "--dsine-root", root / "scannet", "--predictions", broken,
              "--out", tmp_path])
    with pytest.raises(SystemExit):  # ScanNet normals exist only in DSINE's layout
        _run(["--dataset", "scannet", "--predictions", broken, "--out", tmp_path])


def test_dataset_readers(tmp_path):
    nyu = fx.write_nyuv2(tmp_path / "nyu", n=3, test_indices=(1, 3), normals=True)
    diode = fx.write_diode(tmp_path / "diode", per_domain=1, normals_convention="opencv")
    vk = fx.write_vkitti2(tmp_path / "vk", scenes=("Scene01",), frames=2, normals_root=tmp_path / "vkn")
    for k in nyu["test"]:
        _save_npy(tmp_path / "p_nyu", f"{k:04d}", nyu["normals"][k - 1])
    for d in diode:
        if d["domain"] == "indoors":
            _save_npy(tmp_path / "p_diode", d["rel"].rsplit("/", 1)[-1], d["normals"])
    for f in vk:
        _save_npy(tmp_path / "p_vk", f["id"], f["normals"])
    runs = {"nyuv2": ["--nyuv2-mat", nyu["mat"], "--nyuv2-splits", nyu["splits"], "--nyuv2-normals",
                      nyu["normals_dir"], "--predictions", tmp_path / "p_nyu"],
            "diode": ["--diode-root", tmp_path / "diode", "--diode-normals-convention", "opencv",
                      "--predictions", tmp_path / "p_diode"],
            "vkitti2": ["--vkitti2-root", tmp_path / "vk", "--vkitti2-normals", tmp_path / "vkn",
                        "--predictions", tmp_path / "p_vk"]}
    for dataset, args in runs.items():
        entries = _run(["--dataset", dataset, *args, "--out", tmp_path / f"out_{dataset}", "--worst", "1"])
        result = next(iter(entries.values()))["result"]
        assert result["pooled"]["mean"] < 1e-3 and result["num_images"] >= 1, dataset
        assert "| Vision Banana |" in (tmp_path / f"out_{dataset}" / "report.md").read_text()


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.normals", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--convention" in out.stdout and "omnidata" in out.stdout
