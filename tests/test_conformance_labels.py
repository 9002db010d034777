"""Label readers against the official tools' readers (fixtures written from their code).

  Cityscapes  cityscapesScripts: PIL-read `*_gtFine_labelIds.png` (uint8 label ids) mapped by
              helpers.labels id2label[...].trainId (255 = ignored); `*_gtFine_instanceIds.png`
              (uint16) read as evaluation.instance.Instance does: id >= 1000 -> class id // 1000,
              below 1000 a plain label id (a group region for instance classes)
  COCO        pycocotools COCO(annotation_file).annToMask(ann): polygons, uncompressed RLE
              (crowd), compressed RLE
  RefCOCO     lichengunc/refer REFER.getRefIds(split=...): train / val equal, test contains
              "test", testA / testB contain the letter; masks are the referred COCO annotation
  Rain100L    Restormer Deraining test: {input,target}/*.png via cv2 BGR -> RGB
  Kvasir-SEG  PraNet utils/dataloader.py test_dataset: images/ + masks/, mask by PIL
              convert("L"), then the PraNet-family test scripts' gt / gt.max(), > 0.5 = polyp
"""

import json
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data_mix import sources

# ------------------------------------------------------------------------------- Cityscapes

def test_cityscapes_as_cityscapesscripts_reads(tmp_path):
    from cityscapesscripts.evaluation.instance import Instance
    from cityscapesscripts.helpers.labels import id2label

    rng = np.random.default_rng(20)
    h, w = 16, 32
    stem = "frankfurt/frankfurt_000000_000294"
    label_ids = rng.choice([0, 1, 4, 7, 8, 11, 21, 23, 24, 26, 33], (h, w)).astype(np.uint8)
    inst = label_ids.astype(np.uint16)
    inst[2:6, 2:8] = 26001                                  # car 1
    inst[8:12, 4:9] = 26002                                 # car 2
    inst[12:15, 20:30] = 24000                              # person 0
    inst[0:3, 20:26] = 26                                   # a group of cars (id < 1000)
    label_ids[inst >= 1000] = inst[inst >= 1000] // 1000
    label_ids[inst == 26] = 26
    for rel, arr in ((f"leftImg8bit/val/{stem}_leftImg8bit.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
                     (f"gtFine/val/{stem}_gtFine_labelIds.png", label_ids),
                     (f"gtFine/val/{stem}_gtFine_instanceIds.png", inst)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / rel)
    r = sources.CityscapesSource(tmp_path, "val")[0]
    official = np.array(Image.open(tmp_path / f"gtFine/val/{stem}_gtFine_labelIds.png"))
    train_ids = np.vectorize(lambda i: id2label[int(i)].trainId)(official)
    np.testing.assert_array_equal(r["semantic"], np.where(train_ids == 255, -1, train_ids))
    inst_png = np.array(Image.open(tmp_path / f"gtFine/val/{stem}_gtFine_instanceIds.png"))
    expected = []
    for v in np.unique(inst_png):
        label = id2label[Instance(inst_png, v).labelID]
        if v >= 1000 and label.hasInstances and not label.ignoreInEval:
            expected.append((label.name, inst_png == v))
    assert r["instance_classes"] == [name for name, _ in expected] == ["person", "car", "car"]
    for mask, (_, want) in zip(r["instance_masks"], expected, strict=True):
        np.testing.assert_array_equal(mask, want)
    groups = [id2label[int(v)].name for v in np.unique(inst_png) if v < 1000 and id2label[int(v)].hasInstances]
    assert r["meta"]["crowd_classes"] == groups == ["person", "car", "bicycle"]   # plain ids 24, 26, 33


# ------------------------------------------------------------------------------------ COCO

def _coco_tree(root, h=20, w=24):
    rng = np.random.default_rng(21)
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[10:18, 2:12] = 1
    compressed = mask_utils.encode(np.asfortranarray(np.pad(np.ones((4, 4), np.uint8), ((1, h - 5), (15, w - 19)))))
    data = {"images": [{"id": 7, "file_name": "000000000007.jpg", "height": h, "width": w}],
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
            "annotations": [
                {"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 30.0, "bbox": [2, 2, 6, 5],
                 "segmentation": [[2, 2, 8, 2, 8, 7, 2, 7]]},
                {"id": 12, "image_id": 7, "category_id": 1, "iscrowd": 1, "area": 80.0, "bbox": [2, 10, 10, 8],
                 "segmentation": {"size": [h, w],
                                  "counts": [int(c) for c in _uncompressed_counts(crowd)]}},
                {"id": 13, "image_id": 7, "category_id": 3, "iscrowd": 0, "area": 16.0, "bbox": [15, 1, 4, 4],
                 "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()}}]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_text(json.dumps(data))
    (root / "val2017").mkdir()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "val2017/000000000007.jpg",
                                                                             quality=95)
    return root / "annotations/instances_val2017.json", root / "val2017"


def _uncompressed_counts(mask):
    flat = np.asarray(mask).ravel(order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    return runs


def test_coco_as_pycocotools_reads(tmp_path):
    ann_file, image_dir = _coco_tree(tmp_path)
    r = sources.COCOInstancesSource(ann_file, image_dir)[0]
    coco = COCO(str(ann_file))
    assert r["meta"]["ann_ids"] == [11, 12, 13] and r["meta"]["iscrowd"] == [False, True, False]
    for mask, ann_id in zip(r["instance_masks"], r["meta"]["ann_ids"], strict=True):
        np.testing.assert_array_equal(mask, coco.annToMask(coco.anns[ann_id]).astype(bool))
    assert r["instance_classes"] == ["person", "person", "car"]


# --------------------------------------------------------------------------------- RefCOCO

def _refer_tree(root, folder, split_by, splits):
    """refer layout: {folder}/refs({split_by}).p + {folder}/instances.json + train2014 images."""
    h, w = 16, 20
    images, anns, refs = [], [], []
    for k, split in enumerate(splits):
        image_id, ann_id = 100 + k, 500 + k
        images.append({"id": image_id, "file_name": f"COCO_train2014_{image_id:012d}.jpg", "height": h, "width": w})
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 12.0,
                     "bbox": [1, 1, 4, 3], "segmentation": [[1 + k % 5, 1, 5 + k % 5, 1, 5 + k % 5, 4, 1 + k % 5, 4]]})
        refs.append({"ref_id": k, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": split,
                     "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": [k],
                     "sentences": [{"sent_id": k, "sent": f"the thing {k}", "raw": f"The thing {k}.",
                                    "tokens": ["the", "thing", str(k)]}]})
        (root / "train2014").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 40 * k % 256, np.uint8)).save(
            root / "train2014" / images[-1]["file_name"], quality=95)
    (root / folder).mkdir(parents=True)
    (root / folder / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    (root / folder / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return refs


def _refer_ref_ids(refs, split):
    """REFER.getRefIds(split=split), as lichengunc/refer documents and implements it."""
    if split in ("testA", "testB", "testC"):
        return [r["ref_id"] for r in refs if split[-1] in r["split"]]
    if split == "test":
        return [r["ref_id"] for r in refs if "test" in r["split"]]
    return [r["ref_id"] for r in refs if r["split"] == split]


@pytest.mark.parametrize("folder,split_by,splits,asked", [
    ("refcoco", "unc", ("train", "val", "testA", "testB", "testA", "val"), ("train", "val", "test", "testA", "testB")),
    ("refcoco+", "unc", ("train", "testB", "testA", "val"), ("testA", "testB")),
    ("refcocog", "umd", ("train", "val", "test", "val", "test"), ("train", "val", "test")),
])
def test_refcoco_as_refer_reads(tmp_path, folder, split_by, splits, asked):
    refs = _refer_tree(tmp_path, folder, split_by, splits)
    coco = COCO(str(tmp_path / folder / "instances.json"))
    for split in asked:
        src = sources.RefCOCOSource(tmp_path / folder / f"refs({split_by}).p", tmp_path / folder / "instances.json",
                                    tmp_path / "train2014", split)
        assert [g[0]["ref_id"] for g in src.groups] == _refer_ref_ids(refs, split), split
        assert src.name == f"{folder}_{split_by}/{split}"
        r = src[0]
        ref = next(x for x in refs if x["ref_id"] == src.groups[0][0]["ref_id"])
        np.testing.assert_array_equal(r["referring"][0]["mask"], coco.annToMask(coco.anns[ref["ann_id"]]).astype(bool))
        assert r["referring"][0]["expressions"] == [s["sent"] for s in ref["sentences"]]


def test_eval_refcoco_scores_refcoco_testa(tmp_path):
    """python -m eval.refcoco --split testA on a refs(unc).p: only the testA objects are scored."""
    from eval import refcoco as refcoco_eval

    refs = _refer_tree(tmp_path, "refcoco", "unc", ("train", "testA", "testB", "testA", "val"))
    coco = COCO(str(tmp_path / "refcoco" / "instances.json"))
    preds = tmp_path / "perfect"
    preds.mkdir()
    for ref in refs:
        mask = coco.annToMask(coco.anns[ref["ann_id"]]) * 255
        Image.fromarray(mask.astype(np.uint8)).save(preds / f"{ref['ref_id']}_0.png")
    entries = refcoco_eval.main(["--refs-file", str(tmp_path / "refcoco" / "refs(unc).p"),
                                 "--instances-file", str(tmp_path / "refcoco" / "instances.json"),
                                 "--image-dir", str(tmp_path / "train2014"), "--split", "testA",
                                 "--predictions", str(preds), "--name", "ours", "--out", str(tmp_path / "out"),
                                 "--no-progress", "--worst", "0"])
    result = entries["ours"]["result"]
    assert result["num_expressions"] == len(_refer_ref_ids(refs, "testA")) == 2 and result["ciou"] == 1.0


# ------------------------------------------------------------------------- Kvasir-SEG (PraNet)

def test_kvasir_seg_as_pranet_reads(tmp_path):
    """PraNet's test_dataset: masks read by PIL `convert('L')`, then gt / gt.max() > 0.5."""
    rng = np.random.default_rng(22)
    h, w = 40, 48
    yy, xx = np.mgrid[:h, :w]
    blob = ((yy - 20) ** 2 + (xx - 22) ** 2 < 150).astype(np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4"):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
    # Kvasir-SEG ships 0/255 RGB JPEG masks (noisy at edges); others ship 0/1 PNGs.
    Image.fromarray(np.repeat(blob[..., None] * 255, 3, axis=2)).save(
        tmp_path / "masks" / "cju0qkwl35piu0993l0dewei2.jpg", quality=75)
    Image.fromarray(blob).save(tmp_path / "masks" / "cju0qoxqj9q6s0835b43399p4.png")
    src = sources.BinaryMaskFolderSource(tmp_path)
    for r in src:
        gt = np.asarray(Image.open(r["meta"]["mask_path"]).convert("L"), np.float32)
        gt /= gt.max() + 1e-8
        np.testing.assert_array_equal(r["mask"], gt > 0.5)


# ------------------------------------------------------------------------ Rain100L (Restormer)

def test_rain100l_as_restormer_reads(tmp_path):
    """Restormer's Deraining test: Datasets/test/Rain100L/{input,target}/*.png, read by
    utils.load_img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)."""
    rng = np.random.default_rng(23)
    for folder in ("input", "target"):
        (tmp_path / folder).mkdir()
        for k in (1, 2):
            assert cv2.imwrite(str(tmp_path / folder / f"{k}.png"), rng.integers(0, 256, (10, 14, 3), dtype=np.uint8))
    for r in sources.RestorationPairsSource(tmp_path):
        for key, path in (("image", r["meta"]["image_path"]), ("target", r["meta"]["target_path"])):
            np.testing.assert_array_equal(r[key], cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
