"""Bad prediction files and scoring corner cases: errors name the file and the values found;
nothing is scored silently (issue 12: restoration's identical pairs, Cityscapes ids, NaN
normals, COCO scores, non-binary masks, empty / pickled .npy files)."""

import cv2
import numpy as np
import pytest

from eval import predictions as preds
from eval.metrics.restoration import PSNR_CAP, RestorationEvaluator


def test_restoration_identical_pairs_count_capped():
    """A model exact on 2 of 3 images must not rank below one off by 1 level on them."""
    rng = np.random.default_rng(0)
    clean = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    far = np.clip(clean[2].astype(int) + rng.integers(-60, 61, clean[2].shape), 0, 255).astype(np.uint8)
    exact, off = RestorationEvaluator(), RestorationEvaluator()
    for i, c in enumerate(clean):
        exact.add(c if i < 2 else far, c)
        one = np.where(c < 255, c + 1, c - 1).astype(np.uint8)  # every value off by one level
        off.add(one if i < 2 else far, c)
    a, b = exact.result(), off.result()
    assert a["num_identical"] == 2 and a["num_images"] == 3 and a["psnr_cap_db"] == PSNR_CAP
    assert a["psnr"] > b["psnr"]
    one_level = 10 * np.log10(255 ** 2)  # PSNR of an image off by 1 level everywhere
    assert a["psnr"] - b["psnr"] == pytest.approx(2 * (PSNR_CAP - one_level) / 3)


# ------------------------------------------------------------------ .npy depth and normals


@pytest.mark.parametrize("reader", [preds.read_depth, preds.read_normals])
def test_empty_or_pickled_npy_names_the_file(tmp_path, reader):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{empty}: an empty file \(0 bytes\)"):
        reader(empty)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"depth": 1.0}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=rf"{pickled}: not a readable numeric .npy"):
        reader(pickled)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY\x01\x00truncated")
    with pytest.raises(ValueError, match=str(garbage)):
        reader(garbage)


def test_nan_normals_are_an_error_not_90_degrees(tmp_path):
    n = np.zeros((4, 5, 3), np.float32)
    n[..., 2] = 1
    n[0, :3] = np.nan
    path = tmp_path / "n.npy"
    np.save(path, n)
    with pytest.raises(ValueError, match=rf"{path}: 3 of 20 normal vectors hold NaN / inf"):
        preds.read_normals(path)
    n[0, :3] = 0  # zero vectors: "no prediction", the documented convention, still read
    np.save(path, n)
    assert (np.linalg.norm(preds.read_normals(path), axis=-1) == 0).sum() == 3


# ------------------------------------------------------------------------ binary masks


def test_non_binary_mask_png_is_an_error_naming_values(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), mask)
    assert preds.read_mask(ok).sum() == 32
    mask[0, 0], mask[7, 7] = 128, 37  # a probability map, not a mask
    bad = tmp_path / "bad.png"
    cv2.imwrite(str(bad), mask)
    with pytest.raises(ValueError, match=rf"{bad}: a binary mask may hold only 0, 1 and 255; "
                                         r"found 2 other values \(37, 128\)"):
        preds.read_mask(bad)
    red = np.zeros((8, 8, 3), np.uint8)
    red[:4, :, 2] = 255  # BGR red: not gray
    cv2.imwrite(str(tmp_path / "red.png"), red)
    with pytest.raises(ValueError, match="must be gray"):
        preds.read_mask(tmp_path / "red.png")
    jpeg = tmp_path / "noisy.jpg"  # lossy files are thresholded (their values scatter)
    cv2.imwrite(str(jpeg), np.where(np.arange(64).reshape(8, 8) < 32, 250, 3).astype(np.uint8))
    assert preds.read_mask(jpeg).sum() == 32


# ---------------------------------------------------------------------------- Cityscapes


def _png(path, array):
    cv2.imwrite(str(path), array)
    return path


def test_cityscapes_ids_out_of_range_trainids_and_rgb_id_maps(tmp_path):
    from eval.metrics.cityscapes_files import evaluate_files, to_label_ids

    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([7, 8, 11, 21, 23, 24, 26], np.uint8), (16, 32))
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    gt = _png(gt_dir / "aachen_000000_000019_gtFine_labelIds.png", labels)
    _png(gt_dir / "aachen_000000_000019_gtFine_instanceIds.png", labels.astype(np.uint16))
    out_of_range = labels.copy()
    out_of_range[0, :4] = [40, 41, 200, 40]
    bad = _png(tmp_path / "aachen_000000_000019_pred.png", out_of_range)
    with pytest.raises(ValueError, match=rf"{bad}: Cityscapes label ids are 0..33; found 40, 41, 200"):
        evaluate_files([bad], [gt], progress=False)
    with pytest.raises(ValueError, match="label ids are 0..33; found 40, 41, 200"):
        to_label_ids(out_of_range, "auto", None, 96.0, str(bad))
    from eval.metrics import cityscapes_labels as cl
    train = cl.LABEL_TO_TRAIN_LUT[labels]  # trainIds 0..18 (255 void) scored as label ids
    with pytest.raises(ValueError, match="looks like a trainId map; pass --pred-format train"):
        to_label_ids(train, "auto", None, 96.0, "t.png")
    assert (to_label_ids(train, "train", None, 96.0, "t.png") == labels).all()
    with pytest.raises(ValueError, match=r"trainIds must be 0..18 or 255 \(void\); found 19"):
        to_label_ids(np.full((4, 4), 19, np.uint8), "train", None, 96.0, "t.png")
    rgb_ids = np.repeat(labels[..., None], 3, axis=2)  # an id map saved as 3-channel gray
    with pytest.raises(ValueError, match="an id map saved as RGB"):
        to_label_ids(rgb_ids, "auto", None, 96.0, "rgb.png")
    assert (to_label_ids(labels, "auto", None, 96.0, "ok.png") == labels).all()


# --------------------------------------------------------------------------------- COCO


def test_coco_nan_or_string_scores_are_rejected_naming_the_file(tmp_path):
    from eval.metrics.coco import CocoSegmEvaluator, check_scores

    dets = [{"score": 0.9}, {"score": float("nan")}, {"score": "0.8"}, {"score": True}]
    with pytest.raises(ValueError, match=r"res.json: 3 detections have no finite numeric score "
                                         r"\(entry 1: nan, entry 2: '0.8', entry 3: True\)"):
        check_scores(dets, "res.json")
    check_scores([{"score": 1}, {"score": np.float32(0.5)}], "ok.json")
    gt = {"images": [{"id": 1, "height": 4, "width": 4}], "annotations": [],
          "categories": [{"id": 1, "name": "a"}]}
    with pytest.raises(ValueError, match="scores must be finite"):
        CocoSegmEvaluator(gt).add(1, np.ones((1, 4, 4), bool), [float("nan")], [1])
