"""python -m eval.binary_masks on a Kvasir-SEG-layout fixture (JPEG images and masks): perfect and
perturbed masks against Dice / HD95 computed directly, easy / hard strata from a reference
model's scores (file or scored model), errors, --help."""

import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_mix.sources.paired_folders import BinaryMaskFolderSource
from eval import binary_masks as binary_eval
from eval.metrics.binary import BinaryMaskEvaluator, strata

REPO = pathlib.Path(__file__).resolve().parents[1]
N = 20


def write_kvasir(root: pathlib.Path, n: int = N, size=(24, 32), seed: int = 0) -> list[str]:
    """Kvasir-SEG layout: images/<id>.jpg (RGB JPEG) and masks/<id>.jpg (0/255 JPEG, noisy)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    h, w = size
    for i in range(n):
        name = f"cju{i:04d}polyp"
        coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = np.zeros((h, w), np.uint8)
        cy, cx, r = rng.integers(6, h - 6), rng.integers(6, w - 6), rng.integers(3, 6)
        cv2.circle(mask, (int(cx), int(cy)), int(r), 255, -1)
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 90])
        names.append(name)
    return names


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kvasir")
    names = write_kvasir(root / "Kvasir-SEG")
    source = BinaryMaskFolderSource(root / "Kvasir-SEG")
    rng = np.random.default_rng(1)
    gts = {r["meta"]["id"]: r["mask"] for r in source}
    (root / "perfect").mkdir()
    (root / "shifted").mkdir()
    shifted, reference = {}, {}
    for k, name in enumerate(names):
        cv2.imwrite(str(root / "perfect" / f"{name}.png"), gts[name].astype(np.uint8) * 255)
        shifted[name] = np.roll(gts[name], int(rng.integers(0, 4)), axis=1)
        if k == 3:
            shifted[name][:] = False  # an empty prediction: HD95 = image diagonal
        cv2.imwrite(str(root / "shifted" / f"{name}.png"), shifted[name].astype(np.uint8))  # 0/1 PNG
        reference[name] = float(rng.uniform(50, 95))
    (root / "reference.json").write_text(json.dumps(reference))
    (root / "reference.csv").write_text("case,dice\n" + "".join(f"{k},{v}\n" for k, v in reference.items()))
    return {"root": root, "names": names, "gts": gts, "shifted": shifted, "reference": reference}


def test_perfect_perturbed_and_strata(data, tmp_path):
    root, out = data["root"], tmp_path / "out"
    entries = _run(["--dataset-root", root / "Kvasir-SEG", "--predictions", root / "perfect",
                    "--name", "ours", "--baseline", f"unet={root / 'shifted'}",
                    "--reference-scores", root / "reference.json", "--out", out, "--worst", "3"])
    ours = entries["ours"]["result"]
    assert ours["all"] == {"num_cases": N, "dice": 100.0, "hd95": 0.0, "hd95_undefined": 0}
    direct = BinaryMaskEvaluator()
    for name in data["names"]:
        direct.add(name, data["shifted"][name], data["gts"][name])
    groups = strata(data["reference"])
    expected = direct.result(groups)
    got = entries["unet"]["result"]
    for part in ("all", "easy", "hard"):
        assert got[part] == expected[part], part
    assert got["easy"]["num_cases"] == got["hard"]["num_cases"] == 1
    assert direct.cases[data["names"][3]]["hd95"] == pytest.approx(np.hypot(24, 32))
    saved = json.loads((out / "results.json").read_text())
    assert saved["strata"]["cases"] == groups and saved["strata"]["metric"] == "dice"
    md = (out / "report.md").read_text()
    assert f"| **unet** | {expected['all']['dice']:.2f} | {expected['all']['hd95']:.2f} |" in md
    assert "Strata: the 5 % best (easy) and worst (hard) cases" in md
    for name in ("chart_dice", "chart_hd95", "worst_ours", "worst_unet"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name
    # The same strata from a CSV file, and from a scored model's own Dice.
    csv_run = _run(["--dataset-root", root / "Kvasir-SEG", "--predictions", root / "shifted",
                    "--reference-scores", root / "reference.csv", "--out", tmp_path / "csv", "--worst", "0"])
    assert csv_run["shifted"]["result"]["hard"] == expected["hard"]
    by_model = _run(["--dataset-root", root / "Kvasir-SEG", "--predictions", root / "shifted",
                     "--name", "unet", "--reference-model", "unet", "--out", tmp_path / "model",
                     "--worst", "0"])
    self_groups = strata({k: v["dice"] for k, v in direct.cases.items()})
    assert by_model["unet"]["result"]["hard"] == direct.result(self_groups)["hard"]


def test_errors_are_named(data, tmp_path):
    root = data["root"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in data["names"][1:]:
        (broken / f"{name}.png").write_bytes((root / "perfect" / f"{name}.png").read_bytes())
    first = data["names"][0]
    (broken / f"{first}_mask.png").write_bytes((root / "perfect" / f"{first}.png").read_bytes())
    with pytest.raises(FileNotFoundError, match=rf"no prediction for '{first}': expected file .*broken/"
                                                rf"{first}\{{.png,.*\}}; found instead: {first}_mask.png"):
        _run(["--dataset-root", root / "Kvasir-SEG", "--predictions", broken, "--out", tmp_path / "o"])
    partial = dict(list(data["reference"].items())[1:])
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    with pytest.raises(ValueError, match=rf"has no score for cases \['{data['names'][0]}'\]"):
        _run(["--dataset-root", root / "Kvasir-SEG", "--predictions", root / "perfect",
              "--reference-scores", tmp_path / "partial.json", "--out", tmp_path / "o"])


def test_unpaired_dataset_files_are_listed(tmp_path):
    names = write_kvasir(tmp_path / "ds", n=3)
    (tmp_path / "ds" / "masks" / f"{names[1]}.jpg").unlink()
    with pytest.raises(ValueError, match=rf"unpaired files: 1 in images/ without a partner in masks/ "
                                         rf".*{names[1]}"):
        BinaryMaskFolderSource(tmp_path / "ds")


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.binary_masks", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--reference-scores" in out.stdout and "masks/<name>" in out.stdout


def _run(args):
    return binary_eval.main([*map(str, args), "--no-progress"])
