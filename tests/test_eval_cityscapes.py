"""python -m eval.cityscapes on a Cityscapes fixture (tree and zips): perfect and perturbed
predictions in every format, report files, missing / misnamed prediction errors, --help."""

import json
import pathlib
import subprocess
import sys

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest

from eval import cityscapes as cs_eval
from eval.metrics import cityscapes_labels as cl
from eval.metrics.cityscapes_files import evaluate_files

REPO = pathlib.Path(__file__).resolve().parents[1]
# Label ids a perturbed prediction may hold: evaluated classes and "unlabeled", so that every
# id has its own official color (several void ids share black, polegroup shares pole's gray).
_IDS = np.concatenate([[0], cl.EVAL_IDS]).astype(np.uint8)


def _perturbed(label_ids: np.ndarray, rng) -> np.ndarray:
    """The ground truth with random 2x2-block label changes (so half resolution is lossless)."""
    h, w = label_ids.shape
    small = label_ids[::2, ::2].copy()
    small = np.where(np.isin(small, _IDS), small, 0)
    flip = rng.random(small.shape) < 0.3
    small[flip] = rng.choice(_IDS, int(flip.sum()))
    return np.kron(small, np.ones((2, 2), np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    frames = fx.write_cityscapes(root / "tree", frames_per_city=2, size=(32, 64))
    fx.write_cityscapes(root / "zips", frames_per_city=2, size=(32, 64), as_zip=True)
    rng = np.random.default_rng(0)
    palette = {name: [int(v) for v in c] for name, c in
               zip(cl.EVAL_NAMES, np.random.default_rng(1).permutation(256)[:57].reshape(19, 3), strict=True)}
    palette["unlabeled"] = [0, 0, 0]
    custom_colors = np.zeros((256, 3), np.uint8)
    for name, c in palette.items():
        custom_colors[next(lab.id for lab in cl.LABELS if lab.name == name)] = c
    (root / "custom_map.json").write_text(json.dumps(palette))
    for folder in ("full", "train_half", "colored", "custom"):
        (root / folder).mkdir()
    full = []
    for fr in frames:
        stem, city = fr["stem"], fr["city"]
        (root / "perfect" / city).mkdir(parents=True, exist_ok=True)  # per-city folders, as official results
        cv2.imwrite(str(root / "perfect" / city / f"{stem}_pred.png"), fr["label_ids"])
        pert = _perturbed(fr["label_ids"], rng)
        full.append(root / "full" / f"{stem}_labelIds.png")
        cv2.imwrite(str(full[-1]), pert)
        cv2.imwrite(str(root / "train_half" / f"{stem}_trainIds.png"), cl.LABEL_TO_TRAIN_LUT[pert[::2, ::2]])
        cv2.imwrite(str(root / "colored" / f"{stem}_color.png"), cl.COLORS_BY_LABEL_ID[pert][..., ::-1])
        cv2.imwrite(str(root / "custom" / f"{stem}_color.png"), custom_colors[pert][..., ::-1])
    gt_dir = root / "tree" / "gtFine" / "val"
    gts = [gt_dir / fr["city"] / f"{fr['stem']}_gtFine_labelIds.png" for fr in frames]
    direct = evaluate_files(full, gts, progress=False)
    return {"root": root, "frames": frames, "direct": direct}


def _run(args):
    return cs_eval.main([*map(str, args), "--no-progress"])


def test_perfect_and_perturbed_predictions_in_every_format(data, tmp_path):
    root, out = data["root"], tmp_path / "out"
    entries = _run(["--cityscapes-root", root / "tree", "--predictions", root / "perfect", "--name", "ours",
                    "--baseline", f"labels={root / 'full'}", "--baseline", f"sam3={root / 'train_half'}",
                    "--baseline", f"colored={root / 'colored'}", "--baseline", f"custom={root / 'custom'}",
                    "--pred-format", "sam3=train", "--color-map", f"custom={root / 'custom_map.json'}",
                    "--out", out, "--worst", "2"])
    assert list(entries) == ["ours", "labels", "sam3", "colored", "custom"]
    perfect = entries["ours"]["result"]
    for key in ("miou", "category_miou", "miiou", "category_miiou"):
        assert perfect[key] == 1.0
    direct = data["direct"]
    for name in ("labels", "sam3", "colored", "custom"):
        result = entries[name]["result"]
        for key in ("miou", "category_miou", "miiou", "category_miiou", "classes", "categories",
                    "confusion_label_ids"):
            assert result[key] == direct[key], (name, key)
    assert 0.3 < direct["miou"] < 0.99
    # Files: JSON with the same numbers, Markdown beside the paper's rows, charts and grids.
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["sam3"]["result"]["miou"] == direct["miou"]
    assert saved["models"]["sam3"]["pred_format"] == "train"
    assert len(saved["models"]["ours"]["per_image"]) == 4
    assert [r["model"] for r in saved["references"]][:2] == ["Vision Banana", "SAM 3"]
    md = (out / "report.md").read_text()
    assert f"| **sam3** | {direct['miou']:.3f} |" in md
    assert "| Vision Banana | 0.699 |" in md and "| SAM 3 | 0.652 |" in md and "arXiv 2604.20329" in md
    assert "## Per-class IoU" in md and "![Per-class IoU](chart_class_iou.png)" in md
    for name in ("chart_class_iou", "worst_ours", "worst_sam3", "worst_custom"):
        image = cv2.imread(str(out / f"{name}.png"))
        assert image is not None and image.shape[0] > 200, name


def test_zip_archives_score_like_the_tree(data, tmp_path):
    root = data["root"]
    tree = _run(["--cityscapes-root", root / "tree", "--predictions", root / "full", "--out", tmp_path / "a",
                 "--worst", "0", "--limit", "3"])
    zips = _run(["--cityscapes-root", root / "zips", "--predictions", root / "full", "--out", tmp_path / "b",
                 "--worst", "1", "--limit", "3"])
    assert tree["full"]["result"]["num_images"] == 3
    assert tree["full"]["result"]["classes"] == zips["full"]["result"]["classes"]
    assert "first 3 of 4 images (--limit)" in (tmp_path / "b" / "report.md").read_text()


def test_missing_and_misnamed_predictions_are_named(data, tmp_path):
    root = data["root"]
    broken = tmp_path / "broken"
    files = sorted((root / "full").glob("*.png"))
    broken.mkdir()
    for f in files[1:]:
        (broken / f.name).write_bytes(f.read_bytes())
    missing = files[0].name.split("_labelIds")[0]
    expected = (rf"model 'broken': no prediction for ground truth .*{missing}_gtFine_labelIds.png: "
                rf"expected exactly one {missing}\*\.png")
    with pytest.raises(FileNotFoundError, match=expected):
        _run(["--cityscapes-root", root / "tree", "--predictions", broken, "--out", tmp_path / "o"])
    (broken / ("x" + files[0].name)).write_bytes(files[0].read_bytes())  # misnamed: not found either
    with pytest.raises(FileNotFoundError, match=f"no prediction for ground truth .*{missing}"):
        _run(["--cityscapes-root", root / "tree", "--predictions", broken, "--out", tmp_path / "o"])
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for f in files:
        cv2.imwrite(str(rgb / f.name), np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="--pred-format label needs a single-channel PNG"):
        _run(["--cityscapes-root", root / "tree", "--predictions", rgb, "--pred-format", "label",
              "--out", tmp_path / "o"])
    with pytest.raises(ValueError, match="key 'roadway' is no Cityscapes label name"):
        (tmp_path / "bad.json").write_text(json.dumps({"roadway": [1, 2, 3]}))
        _run(["--cityscapes-root", root / "tree", "--predictions", rgb, "--color-map", tmp_path / "bad.json",
              "--out", tmp_path / "o"])


def test_usage_errors_exit(data, tmp_path, capsys):
    root = data["root"]
    for bad in (["--baseline", "nodir"], ["--baseline", f"a={root / 'nope'}"],
                ["--predictions", root / "full", "--baseline", f"full={root / 'full'}"],
                ["--predictions", root / "full", "--pred-format", "other=train"], []):
        with pytest.raises(SystemExit):
            _run(["--cityscapes-root", root / "tree", "--out", tmp_path / "o", *bad])
    assert "no model named 'other'" in capsys.readouterr().err


def test_python_m_help_and_one_line_errors(data, tmp_path):
    out = subprocess.run([sys.executable, "-m", "eval.cityscapes", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--cityscapes-root" in out.stdout and "<city>_<seq>_<frame>*.png" in out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    command = [sys.executable, "-m", "eval.cityscapes", "--cityscapes-root", str(data["root"] / "tree"),
               "--predictions", str(empty), "--out", str(tmp_path / "o"), "--no-progress"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("error: model 'empty': no prediction for ground truth")
    assert "Traceback" not in out.stderr
