"""python -m eval.refcoco on a RefCOCOg fixture: PNG-mask folders and RLE JSON files, perfect and
perturbed masks against cIoU / gIoU computed directly, missing keys named, --help."""

import json
import pathlib
import subprocess
import sys

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest

from eval import refcoco as refcoco_eval
from eval.metrics.referring import ReferringEvaluator
from tasks import instance

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
    return refcoco_eval.main([*map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("refcoco")
    written = fx.write_refcoco(root)
    val = {rid: r for rid, r in written["refs"].items() if r["split"] == "val"}
    (root / "perfect").mkdir()
    (root / "half").mkdir()
    shifted, direct = {}, ReferringEvaluator()
    for rid, ref in sorted(val.items()):
        for k in range(len(ref["sents"])):
            key = f"{rid}_{k}"
            cv2.imwrite(str(root / "perfect" / f"{key}.png"), ref["mask"].astype(np.uint8) * 255)
            cv2.imwrite(str(root / "half" / f"{key}.png"), ref["mask"][::2, ::2].astype(np.uint8))  # 0/1 PNG
            shifted[key] = np.roll(ref["mask"], (k + 1, 2 * k), axis=(0, 1))
            direct.add(shifted[key], ref["mask"], name=key)
    rles = instance.to_rle(np.array(list(shifted.values())))
    (root / "shifted.json").write_text(json.dumps(dict(zip(shifted, rles, strict=True))))
    return {"root": root, "val": val, "direct": direct.result()}


def test_perfect_png_and_perturbed_rle(data, tmp_path):
    root, out = data["root"], tmp_path / "out"
    entries = _run(["--refcoco-root", root, "--predictions", root / "perfect", "--name", "ours",
                    "--baseline", f"sam3={root / 'shifted.json'}", "--baseline", f"half={root / 'half'}",
                    "--out", out, "--worst", "3"])
    ours = entries["ours"]["result"]
    assert ours["ciou"] == 1.0 and ours["giou"] == 1.0 and ours["num_expressions"] == 6
    assert ours["precision"]["0.9"] == 100.0
    half = entries["half"]["result"]
    assert half["num_expressions"] == 6 and half["ciou"] > 0.6  # nearest-upsampled half-res masks
    sam3, direct = entries["sam3"]["result"], data["direct"]
    for key in ("ciou", "giou", "precision", "num_expressions"):
        assert sam3[key] == direct[key], key
    assert 0.2 < direct["ciou"] < 0.95
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["sam3"]["result"]["giou"] == direct["giou"]
    assert {r["name"] for r in saved["models"]["ours"]["result"]["per_expression"]} == \
        {f"{rid}_{k}" for rid in data["val"] for k in range(2)}
    md = (out / "report.md").read_text()
    assert f"| **sam3** | {direct['ciou']:.3f} | {direct['giou']:.3f} |" in md
    assert "| Vision Banana | 0.738 |" in md and "| SAM 3 Agent | 0.734 |" in md
    for name in ("chart_scores", "worst_ours", "worst_sam3"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name


def test_missing_predictions_are_named(data, tmp_path):
    root = data["root"]
    partial = {k: v for k, v in json.loads((root / "shifted.json").read_text()).items() if k != "2_1"}
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    with pytest.raises(FileNotFoundError, match=r"no prediction for '2_1': expected key '2_1' in "
                                                r".*partial.json \(found 2_0\)"):
        _run(["--refcoco-root", root, "--predictions", tmp_path / "partial.json", "--out", tmp_path / "o"])
    folder = tmp_path / "pngs"
    folder.mkdir()
    for f in (root / "perfect").glob("*.png"):
        name = "ref5_0.png" if f.name == "5_0.png" else f.name
        (folder / name).write_bytes(f.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no prediction for '5_0': expected file .*pngs/5_0.png; "
                                                r"found instead: ref5_0.png"):
        _run(["--refcoco-root", root, "--predictions", folder, "--out", tmp_path / "o"])


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.refcoco", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "<ref_id>_<k>" in out.stdout
