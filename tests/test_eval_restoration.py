"""python -m eval.restoration on an input/ + target/ fixture: perfect and perturbed restorations
against PSNR / SSIM computed directly, the degraded-input floor, errors, --help."""

import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_mix.sources.paired_folders import RestorationPairsSource
from eval import restoration as restoration_eval
from eval.metrics.restoration import RestorationEvaluator

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
    return restoration_eval.main([*map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Rain100L-style pairs: input/<n>.png (clean + bright streaks) and target/<n>.png (clean)."""
    root = tmp_path_factory.mktemp("rain")
    rng = np.random.default_rng(0)
    for folder in ("ds/input", "ds/target", "perfect", "restored"):
        (root / folder).mkdir(parents=True)
    clean, restored = {}, {}
    for i in range(4):
        name = f"rain-{i:03d}"
        coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
        c = cv2.resize(coarse, (48, 32), interpolation=cv2.INTER_LINEAR)
        rain = c.copy()
        rain[:, rng.integers(0, 48, 6)] = 230
        restored[name] = np.clip(c.astype(int) + rng.integers(-6, 7, c.shape), 0, 255).astype(np.uint8)
        clean[name] = c
        files = {"ds/input": rain, "ds/target": c, "perfect": c, "restored": restored[name]}
        for folder, image in files.items():
            cv2.imwrite(str(root / folder / f"{name}.png"), image[..., ::-1])
    return {"root": root, "clean": clean, "restored": restored}


def test_perfect_and_perturbed(data, tmp_path):
    root, out = data["root"], tmp_path / "out"
    entries = _run(["--dataset-root", root / "ds", "--kind", "derain", "--predictions", root / "perfect",
                    "--name", "ours", "--baseline", f"restormer={root / 'restored'}", "--out", out,
                    "--worst", "2"])
    ours = entries["ours"]["result"]
    assert ours["psnr"] == 100.0 and ours["num_identical"] == 4  # identical: capped, counted and ours["ssim"] == pytest.approx(1.0)  # noqa: E501
    direct = RestorationEvaluator()
    for name, image in data["restored"].items():
        direct.add(image, data["clean"][name], name=name)
    expected = direct.result()
    got = entries["restormer"]["result"]
    assert got["psnr"] == expected["psnr"] and got["ssim"] == expected["ssim"]
    assert 25 < expected["psnr"] < 45
    saved = json.loads((out / "results.json").read_text())
    floor = saved["models"]["input (no restoration)"]["result"]
    assert floor["psnr"] < expected["psnr"]
    md = (out / "report.md").read_text()
    assert f"| **restormer** | {expected['psnr']:.2f} | {expected['ssim']:.4f} |" in md
    for name in ("chart_psnr", "chart_ssim", "worst_restormer"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name


def test_errors_are_named(data, tmp_path):
    root = data["root"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in sorted((root / "restored").glob("*.png"))[1:]:
        (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no prediction for 'rain-000': expected file "
                                                r".*broken/rain-000"):
        _run(["--dataset-root", root / "ds", "--predictions", broken, "--out", tmp_path / "o"])
    (root / "ds" / "target" / "extra.png").write_bytes((root / "ds" / "target" / "rain-000.png").read_bytes())
    try:
        with pytest.raises(ValueError, match=r"unpaired files: 0 in input/ .* 1 in target/ without one in "
                                             r"input/ \(e.g. \['extra'\]\)"):
            RestorationPairsSource(root / "ds")
    finally:
        (root / "ds" / "target" / "extra.png").unlink()


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.restoration", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--kind" in out.stdout and "target/<name>" in out.stdout
