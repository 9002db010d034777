"""Our Cityscapes scores equal cityscapesScripts' evalPixelLevelSemanticLabeling on the same files.

The test writes Cityscapes trees (labelIds + instanceIds PNGs with street structure, several
sizes, one full 2048x1024 frame) and predictions of several kinds, runs the official
`evaluateImgLists` on them, then `eval.metrics.cityscapes_files.evaluate_files`, and compares
every class IoU, class iIoU, category IoU, category iIoU, the four means (to 1e-9) and the
confusion matrix (exactly).
"""

import copy
import importlib
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from eval.metrics import cityscapes_labels as cl
from eval.metrics import cityscapes_synthetic as synth
from eval.metrics.cityscapes_files import evaluate_files

TOL = 1e-9


@pytest.fixture
def official(tmp_path, monkeypatch):
    """cityscapesScripts' evaluation module and an args object for quiet in-memory runs."""
    # The module reads these at import and needs np.in1d, which numpy 2.4 removed.
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path / "cs_dataset"))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(tmp_path / "cs_results"))
    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(np.ravel(a), b, invert=invert),
                            raising=False)
    module = importlib.import_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    args = copy.copy(module.args)
    args.JSONOutput, args.quiet, args.evalInstLevelScore, args.evalPixelAccuracy = False, True, True, False
    return module, args


def _run_official(official, preds, gts):
    module, args = official
    return module.evaluateImgLists([str(p) for p in preds], [str(g) for g in gts], copy.copy(args))


def _assert_same(theirs: dict, ours: dict) -> None:
    pairs = [("classScores", "classes"), ("classInstScores", "classes_iiou"),
             ("categoryScores", "categories"), ("categoryInstScores", "categories_iiou")]
    for their_key, our_key in pairs:
        for name, value in theirs[their_key].items():
            mine = ours[our_key].get(name)
            if math.isnan(value):
                assert mine is None, f"{our_key}[{name}]: official NaN, ours {mine}"
            else:
                assert mine is not None and abs(mine - value) <= TOL, f"{our_key}[{name}]: {value} vs {mine}"
        # We list exactly the scores the official script defines as possibly finite.
        assert set(ours[our_key]) <= set(theirs[their_key])
    for their_key, our_key in [("averageScoreClasses", "miou"), ("averageScoreInstClasses", "miiou"),
                               ("averageScoreCategories", "category_miou"),
                               ("averageScoreInstCategories", "category_miiou")]:
        assert abs(theirs[their_key] - ours[our_key]) <= TOL, (their_key, theirs[their_key], ours[our_key])
    np.testing.assert_array_equal(np.asarray(theirs["confMatrix"], np.int64),
                                  np.asarray(ours["confusion_label_ids"], np.int64))


def _tree(root, kind, absent=()):
    """Three 512x1024 frames and one full 2048x1024 frame."""
    files = synth.write_tree(root, 3, 512, 1024, seed=7, kind=kind, absent=absent)
    files += synth.write_tree(root, 1, 1024, 2048, seed=8, kind=kind, absent=absent, first_index=3)
    return files


def test_structured_predictions_match_official(tmp_path, official):
    # "train" is absent from ground truth and predictions: its IoU is NaN in both.
    files = _tree(tmp_path, "structured", absent=(31,))
    # One prediction stored as a palette PNG: the official reader (PIL) sees its indices.
    pred0 = cv2.imread(str(files[0][0]), cv2.IMREAD_UNCHANGED)
    palette_png = Image.fromarray(pred0, mode="L").convert("P")
    palette_png.putpalette([v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, i)])
    palette_png.save(files[0][0])
    preds, gts = [f[0] for f in files], [f[1] for f in files]
    theirs = _run_official(official, preds, gts)
    ours = evaluate_files(preds, gts, progress=False)
    _assert_same(theirs, ours)
    assert ours["classes"]["train"] is None and ours["classes_iiou"]["train"] is None
    assert ours["num_images"] == 4 and 0.3 < ours["miou"] < 0.95


def test_random_predictions_match_official(tmp_path, official):
    # Uniform noise over all 34 label ids: FP-only classes, tiny IoUs, predicted ignored ids.
    files = _tree(tmp_path, "random")
    preds, gts = [f[0] for f in files], [f[1] for f in files]
    _assert_same(_run_official(official, preds, gts), evaluate_files(preds, gts, num_threads=1, progress=False))


def test_train_id_predictions_match_official_on_label_ids(tmp_path, official):
    # Train-id predictions (255 = void) scored by us equal the official score of the same
    # predictions converted to label ids with the official inverse map.
    files = _tree(tmp_path, "structured")
    train_dir = tmp_path / "train_ids"
    label_dir = tmp_path / "back_to_label_ids"
    train_dir.mkdir()
    label_dir.mkdir()
    train_preds, label_preds = [], []
    for pred_path, _, _ in files:
        train = cl.LABEL_TO_TRAIN_LUT[cv2.imread(str(pred_path), cv2.IMREAD_UNCHANGED)]
        train_preds.append(train_dir / pred_path.name)
        label_preds.append(label_dir / pred_path.name)
        cv2.imwrite(str(train_preds[-1]), train)
        cv2.imwrite(str(label_preds[-1]), cl.TRAIN_TO_LABEL_LUT[train])
    gts = [f[1] for f in files]
    ours = evaluate_files(train_preds, gts, pred_ids="train", progress=False)
    _assert_same(_run_official(official, label_preds, gts), ours)
    assert ours["pred_ids"] == "train"
