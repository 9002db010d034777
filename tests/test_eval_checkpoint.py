"""The checkpoint path (--workdir): a tiny trained workdir predicts Cityscapes, the decoded labels
are written as labelId PNGs and scored by the same code as any predictions folder."""

import cv2
import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources.cityscapes import CLASSES, semantic_to_label_ids
from eval import cityscapes as cs_eval
from eval import from_checkpoint
from eval.metrics import cityscapes_labels as cl


@pytest.fixture(scope="module")
def workdir(tiny_workdir):
    return tiny_workdir


@pytest.mark.slow
def test_cityscapes_from_a_checkpoint(workdir, tmp_path):
    from tasks import semantic
    from vision_banana.predict import Predictor

    frames = fx.write_cityscapes(tmp_path / "cs", frames_per_city=1, size=(32, 64))
    out = tmp_path / "out"
    entries = cs_eval.main(["--cityscapes-root", str(tmp_path / "cs"), "--workdir", str(workdir),
                            "--name", "tiny", "--out", str(out), "--batch-size", "2", "--worst", "2",
                            "--no-progress"])
    entry = entries["tiny"]
    info = entry["checkpoint"]
    assert info["step"] == 2 and info["resolution"] == [16, 16] and info["task"] == "semantic"
    assert entry["model"]["kind"] == "checkpoint" and entry["result"]["num_images"] == 2
    folder = out / "predictions" / "tiny"
    written = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.rglob("*.png"))}
    assert sorted(written) == sorted(f"{f['stem']}_pred_labelIds.png" for f in frames)
    allowed = set(cl.EVAL_IDS.tolist()) | {0}
    for labels in written.values():
        assert labels.shape == (32, 64) and labels.dtype == np.uint8 and set(np.unique(labels)) <= allowed
    # The files are the codec's decode of the generator's output, letterboxed and brought back.
    predictor = Predictor.from_workdir(workdir)
    colors = semantic.palette(len(CLASSES))
    boxed = [from_checkpoint.letterbox(f["image"], (16, 16)) for f in frames]
    prompts = [semantic.render_prompt(np.random.default_rng(i), CLASSES, colors, state_background=True,
                                      layout="json") for i in range(2)]
    spec = {"colors": colors, "background": semantic.BLACK, "classes": list(CLASSES)}
    decoded = predictor.predict_decoded(np.stack([c for c, _ in boxed]), prompts, "semantic", spec=[spec] * 2,
                                        seeds=[0, 1])
    for f, (_, box), labels in zip(frames, boxed, decoded, strict=True):
        expected = semantic_to_label_ids(from_checkpoint.unletterbox(labels, box, (32, 64), "semantic"))
        np.testing.assert_array_equal(written[f"{f['stem']}_pred_labelIds.png"], expected)
    # Scored by the same code as any folder: re-scoring the written folder gives the same numbers.
    again = cs_eval.main(["--cityscapes-root", str(tmp_path / "cs"), "--predictions", str(folder),
                          "--out", str(tmp_path / "again"), "--worst", "0", "--no-progress"])
    assert again["tiny"]["result"]["classes"] == entry["result"]["classes"]
    assert (out / "worst_tiny.png").is_file() and "| **tiny** |" in (out / "report.md").read_text()
