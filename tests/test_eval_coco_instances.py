"""python -m eval.coco_instances on a COCO fixture: results JSON files (perfect and perturbed)
against pycocotools' COCOeval run directly, entry validation errors, --limit, --help."""

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from eval import coco_instances as coco_eval
from tasks import instance

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
    return coco_eval.main([*map(str, args), "--no-progress"])


def _detections(images: dict, shift: int = 0, drop_last: bool = False) -> list[dict]:
    cats = {"person": 1, "bicycle": 2, "dog": 3}
    dets = []
    for image_id, exp in images.items():
        rows = zip(exp["masks"], exp["classes"], exp["iscrowd"], strict=True)
        for k, (mask, cls, crowd) in enumerate(rows):
            if crowd:
                continue
            m = np.roll(mask, shift * (k + 1), axis=1)
            rle = instance.to_rle(m[None])[0]
            dets.append({"image_id": image_id, "category_id": cats[cls], "segmentation": rle,
                         "score": 0.9 - 0.1 * k})
    return dets[:-1] if drop_last else dets


def _cocoeval_stats(ann_file, dets, image_ids) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), iouType="segm")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    written = fx.write_coco(root)
    (root / "perfect").mkdir()
    (root / "perfect" / coco_eval.RESULTS_NAME).write_text(json.dumps(_detections(written["images"])))
    perturbed = _detections(written["images"], shift=2, drop_last=True)
    (root / "perturbed.json").write_text(json.dumps(perturbed))
    return {"root": root, "written": written, "perturbed": perturbed}


def test_perfect_and_perturbed_results(data, tmp_path):
    root, written, out = data["root"], data["written"], tmp_path / "out"
    entries = _run(["--coco-annotations", written["annotation_file"], "--coco-images", written["image_dir"],
                    "--predictions", root / "perfect", "--name", "ours",
                    "--baseline", f"sam3={root / 'perturbed.json'}", "--out", out, "--worst", "2"])
    ours = entries["ours"]["result"]
    assert ours["AP"] == 1.0 and ours["AP50"] == 1.0 and ours["num_images"] == 4
    expected = _cocoeval_stats(written["annotation_file"], data["perturbed"], written["images"])
    assert entries["sam3"]["result"]["stats"] == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected[0] < 1.0
    recalls = {r["image_id"]: r["recall"] for r in entries["ours"]["per_image"]}
    assert recalls == {1: 1.0, 2: 1.0, 3: None, 4: 1.0}
    # Image 1, shifted right by 2 and 4 px: the 7-px-wide person keeps IoU 5/9, the 10-px-wide
    # bicycle falls to 6/14 < 0.5 -> recall 1/2.
    recalls = {r["image_id"]: r["recall"] for r in entries["sam3"]["per_image"]}
    assert recalls[1] == 0.5 and recalls[3] is None
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["sam3"]["result"]["AP"] == pytest.approx(expected[0], abs=1e-12)
    md = (out / "report.md").read_text()
    assert f"| **sam3** | {expected[0]:.3f} |" in md and "No published reference numbers" in md
    for name in ("chart_ap", "chart_class_ap", "worst_ours", "worst_sam3"):
        assert cv2.imread(str(out / f"{name}.png")) is not None, name


def test_limit_scores_the_first_images_only(data, tmp_path):
    written = data["written"]
    entries = _run(["--coco-annotations", written["annotation_file"], "--coco-images", written["image_dir"],
                    "--predictions", data["root"] / "perfect", "--limit", "2", "--out", tmp_path,
                    "--worst", "0"])
    result = entries["perfect"]
    dets = json.loads((data["root"] / "perfect" / coco_eval.RESULTS_NAME).read_text())
    expected = _cocoeval_stats(written["annotation_file"], dets, [1, 2])
    assert result["result"]["stats"] == pytest.approx(expected, abs=1e-12)
    assert result["detections_dropped"] == 1  # the detection on image 4


def test_bad_results_are_named(data, tmp_path):
    written = data["written"]
    base = ["--coco-annotations", written["annotation_file"], "--coco-images", written["image_dir"],
            "--out", tmp_path / "o"]
    bad = [dict(d) for d in data["perturbed"]]
    del bad[1]["score"]
    (tmp_path / "noscore.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"noscore.json entry 1 lacks \['score'\]"):
        _run([*base, "--predictions", tmp_path / "noscore.json"])
    bad = [dict(d) for d in data["perturbed"]]
    bad[0]["image_id"] = 99
    (tmp_path / "badid.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="entry 0: image_id 99 is not in the annotations"):
        _run([*base, "--predictions", tmp_path / "badid.json"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match=f"no COCO results file: expected .*empty_dir/"
                                                f"{coco_eval.RESULTS_NAME}"):
        _run([*base, "--predictions", tmp_path / "empty_dir"])


def test_python_m_help():
    out = subprocess.run([sys.executable, "-m", "eval.coco_instances", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert coco_eval.RESULTS_NAME in out.stdout and "category_id" in out.stdout
