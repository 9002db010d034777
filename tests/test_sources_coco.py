"""COCO instances reader (pycocotools): polygons, RLE, crowd regions, categories."""

import json
import pickle

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import COCOInstancesSource, RecordError


@pytest.fixture
def coco(tmp_path):
    return fx.write_coco(tmp_path)


def test_reads_back_masks_of_every_segmentation_form(coco):
    src = COCOInstancesSource(coco["annotation_file"], coco["image_dir"])
    assert len(src) == 4 and src.name == "coco/instances_val2017"
    for i, image_id in enumerate(sorted(coco["images"])):
        e = coco["images"][image_id]
        r = src[i]
        assert r["meta"]["id"] == image_id
        assert np.array_equal(r["image"], fx.decode_jpeg(e["jpeg_bytes"]))
        assert r["instance_masks"].dtype == bool
        assert np.array_equal(r["instance_masks"], e["masks"])    # polygon, RLE, crowd RLE
        assert r["instance_classes"] == e["classes"]
        assert r["meta"]["iscrowd"] == e["iscrowd"] and r["meta"]["ann_ids"] == e["ann_ids"]
    assert src[2]["instance_masks"].shape == (0, 20, 24)           # image without annotations


def test_crowd_and_empty_filters(coco):
    src = COCOInstancesSource(coco["annotation_file"], coco["image_dir"], include_crowd=False,
                              skip_empty=True)
    assert len(src) == 3
    r = src[1]
    assert r["meta"]["iscrowd"] == [False] and r["instance_masks"].shape[0] == 1


def test_pickle_drops_the_index_and_reloads_it(coco):
    src = COCOInstancesSource(coco["annotation_file"], coco["image_dir"])
    data = pickle.dumps(src)
    assert len(data) < 4000
    fx.assert_records_equal(src[0], pickle.loads(data)[0])


def test_unknown_category_bad_segmentation_and_missing_image(coco):
    spec = json.loads(coco["annotation_file"].read_text())
    spec["annotations"][0]["category_id"] = 77
    spec["annotations"][2]["segmentation"] = [[1, 2, 3]]          # under 3 points
    coco["annotation_file"].write_text(json.dumps(spec))
    (coco["image_dir"] / "000000000004.jpg").unlink()
    src = COCOInstancesSource(coco["annotation_file"], coco["image_dir"])
    with pytest.raises(RecordError, match=r"record 0: .*instances_val2017\.json \(image 1\): category "
                                          r"ids \[77\]"):
        src[0]
    with pytest.raises(RecordError, match=r"annotation 103 has a malformed segmentation"):
        src[1]
    with pytest.raises(RecordError, match=r"missing file .*000000000004\.jpg"):
        src[3]
