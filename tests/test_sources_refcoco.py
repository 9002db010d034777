"""RefCOCOg (UMD) reader: refs pickle (Python 2 and 3) + instances.json + COCO images."""

import struct

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import RecordError, RefCOCOSource, refcoco


@pytest.fixture
def ref(tmp_path):
    return fx.write_refcoco(tmp_path)


def test_val_split_one_record_per_referred_object(ref):
    src = RefCOCOSource(ref["refs_file"], ref["instances_file"], ref["image_dir"], "val")
    assert len(src) == 3 and src.name == "refcocog_umd/val"
    for i, ref_id in enumerate([1, 2, 5]):
        e = ref["refs"][ref_id]
        r = src[i]
        assert r["meta"]["ref_ids"] == [ref_id] and r["meta"]["image_id"] == e["image_id"]
        assert np.array_equal(r["image"], fx.decode_jpeg(ref["jpeg_bytes"][e["image_id"]]))
        (item,) = r["referring"]
        assert item["expressions"] == e["sents"] and r["meta"]["raw_expressions"] == [e["raws"]]
        assert item["mask"].dtype == bool and np.array_equal(item["mask"], e["mask"])
    fx.assert_pickle_round_trip(src)


@pytest.mark.parametrize("split,expected", [("train", [3]), ("test", [4]), ("val", [1, 2, 5])])
def test_split_selection_and_grouping_by_image(ref, split, expected):
    src = RefCOCOSource(ref["refs_file"], ref["instances_file"], ref["image_dir"], split,
                        group_by="image")
    ids = [rid for i in range(len(src)) for rid in src[i]["meta"]["ref_ids"]]
    assert ids == expected
    if split == "val":
        assert len(src) == 2 and len(src[0]["referring"]) == 2        # refs 1 and 2 share image 10


def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle as Python 2 writes it: `str` as SHORT_BINSTRING bytes (UTF-8 here)."""
    def enc(o):
        if isinstance(o, bool) or o is None:
            raise TypeError(o)
        if isinstance(o, int):
            return b"J" + struct.pack("<i", o)
        if isinstance(o, str):
            b = o.encode("utf-8")
            return b"U" + bytes([len(b)]) + b
        if isinstance(o, list):
            return b"]" + b"".join(enc(v) + b"a" for v in o)
        if isinstance(o, dict):
            return b"}" + b"".join(enc(k) + enc(v) + b"s" for k, v in o.items())
        raise TypeError(type(o))
    return b"\x80\x02" + enc(obj) + b"."


def test_python2_pickle_with_non_ascii_text(ref, tmp_path):
    refs = [{"ref_id": 1, "ann_id": 501, "image_id": 10, "split": "val", "category_id": 1,
             "sent_ids": [7], "file_name": "x.jpg",
             "sentences": [{"sent_id": 7, "sent": "the café sign", "raw": "The café sign.",
                            "tokens": ["the", "café", "sign"]}]}]
    path = tmp_path / "refs(umd).p"
    path.write_bytes(py2_pickle(refs))
    assert refcoco.load_refs(path) == refs
    src = RefCOCOSource(path, ref["instances_file"], ref["image_dir"], "val")
    assert src[0]["referring"][0]["expressions"] == ["the café sign"]


def test_missing_annotation_and_image_raise(ref):
    src = RefCOCOSource(ref["refs_file"], ref["instances_file"], ref["image_dir"], "val")
    src.groups[0][0]["ann_id"] = 999
    with pytest.raises(RecordError, match=r"refcocog_umd/val record 0: .*ref 1 names annotation 999"):
        src[0]
    (ref["image_dir"] / "COCO_train2014_000000000011.jpg").unlink()
    with pytest.raises(RecordError, match=r"missing file .*COCO_train2014_000000000011\.jpg"):
        src[2]
    with pytest.raises(ValueError, match="no refs with split 'testB'|refer split 'testB'"):
        RefCOCOSource(ref["refs_file"], ref["instances_file"], ref["image_dir"], "testB")


def test_refer_split_rule_and_dataset_name():
    assert refcoco.in_split("testA", "testA") and refcoco.in_split("testAB", "testB")
    assert refcoco.in_split("testB", "test") and not refcoco.in_split("testB", "testA")
    assert refcoco.in_split("test", "test") and not refcoco.in_split("test", "testA")   # UMD exact
    assert not refcoco.in_split("val", "test") and refcoco.in_split("val", "val")
    assert refcoco.in_split("testAB", "testAB") and not refcoco.in_split("testA", "testAB")
    assert refcoco.dataset_name("/d/refcocog/refs(umd).p") == "refcocog_umd"
    assert refcoco.dataset_name("/d/refcoco+/refs(unc).p") == "refcoco+_unc"
    assert refcoco.dataset_name("/d/my_refs.p") == "my_refs"
