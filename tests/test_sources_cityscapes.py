"""Cityscapes reader: extracted trees and the official zips, checked against the official table."""

import pickle
import zipfile

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import CityscapesSource, RecordError
from data_mix.sources import cityscapes as cs


def official_labels():
    from cityscapesscripts.helpers import labels

    return labels


def expected_semantic(label_ids: np.ndarray) -> np.ndarray:
    """trainIds through cityscapesscripts' own id2label (independent of the reader's table)."""
    id2label = official_labels().id2label
    lut = np.full(256, -1, np.int32)
    for i, lab in id2label.items():
        if i >= 0 and 0 <= lab.trainId < 255:
            lut[i] = lab.trainId
    return lut[label_ids]


def expected_instances(inst: np.ndarray):
    id2label = official_labels().id2label
    values = [v for v in np.unique(inst) if v >= 1000
              and id2label[v // 1000].hasInstances and not id2label[v // 1000].ignoreInEval]
    return np.array([inst == v for v in values]).reshape(-1, *inst.shape), \
        [id2label[v // 1000].name for v in values]


def test_label_table_matches_cityscapesscripts():
    official = official_labels().labels
    assert len(cs.LABELS) == len(official)
    for mine, ref in zip(cs.LABELS, official, strict=True):
        assert (mine.name, mine.id, mine.train_id, mine.category, mine.category_id,
                mine.has_instances, mine.ignore_in_eval, mine.color) == (
            ref.name, ref.id, ref.trainId, ref.category, ref.categoryId, ref.hasInstances,
            ref.ignoreInEval, ref.color)
    assert len(cs.CLASSES) == 19 and cs.CLASSES[0] == "road" and cs.CLASSES[18] == "bicycle"
    assert cs.INSTANCE_CLASSES == ("person", "rider", "car", "truck", "bus", "train",
                                   "motorcycle", "bicycle")
    sem = np.arange(-1, 19)
    back = cs.semantic_to_label_ids(sem)
    assert back[0] == 0 and (cs.label_ids_to_semantic(back[1:]) == sem[1:]).all()


@pytest.mark.parametrize("as_zip", [False, True], ids=["tree", "zip"])
def test_reads_back_images_semantic_and_instances(tmp_path, as_zip):
    frames = fx.write_cityscapes(tmp_path, as_zip=as_zip, frames_per_city=2)
    src = CityscapesSource(tmp_path, "val")
    assert len(src) == len(frames) == 4
    for i, fr in enumerate(frames):
        r = src[i]
        assert r["image"].dtype == np.uint8 and np.array_equal(r["image"], fr["image"])
        assert r["semantic"].dtype == np.int32
        assert np.array_equal(r["semantic"], expected_semantic(fr["label_ids"]))
        assert r["classes"] == list(cs.CLASSES)
        masks, names = expected_instances(fr["instance_ids"])
        assert r["instance_masks"].dtype == bool and np.array_equal(r["instance_masks"], masks)
        assert r["instance_classes"] == names and len(names) >= 1
        m = r["meta"]
        assert m["id"] == fr["stem"] and m["city"] == fr["city"] and m["crowd_classes"] == ["car"]
        assert m["label_ids_path"].endswith(f"{fr['stem']}_gtFine_labelIds.png")
        assert ("_trainvaltest.zip::gtFine/val/" in m["label_ids_path"]) == as_zip


def test_zip_source_pickles_and_reopens_its_archive(tmp_path):
    fx.write_cityscapes(tmp_path, as_zip=True)
    src = CityscapesSource(tmp_path, "val")
    first = src[0]
    copy = pickle.loads(pickle.dumps(src))
    assert copy.images._zip is None                  # no handle crosses the pickle
    fx.assert_records_equal(first, copy[0])


def test_images_only_and_missing_tree(tmp_path):
    fx.write_cityscapes(tmp_path)
    r = CityscapesSource(tmp_path, "val", with_labels=False)[0]
    assert set(r) == {"image", "meta"}
    with pytest.raises(FileNotFoundError, match="leftImg8bit/train"):
        CityscapesSource(tmp_path, "train")
    with pytest.raises(FileNotFoundError,
                       match="neither folder .*nowhere.* nor archive .*leftImg8bit_trainvaltest.zip"):
        CityscapesSource(tmp_path / "nowhere", "val")


def test_out_of_range_label_id_raises_naming_file_and_value(tmp_path):
    frames = fx.write_cityscapes(tmp_path)
    bad = frames[0]["label_ids"].copy()
    bad[0, 0] = 34
    path = next(tmp_path.rglob(f"{frames[0]['stem']}_gtFine_labelIds.png"))
    path.write_bytes(fx.png_bytes(bad))
    src = CityscapesSource(tmp_path, "val")
    with pytest.raises(RecordError, match=r"cityscapes/val record 0: .*_gtFine_labelIds\.png: label "
                                          r"values \{34\} are outside"):
        src[0]
    src[1]                                            # the other record is fine


def test_corrupt_zip_member_and_missing_label_raise(tmp_path):
    frames = fx.write_cityscapes(tmp_path, as_zip=True)
    archive = tmp_path / "gtFine_trainvaltest.zip"
    with zipfile.ZipFile(archive) as z:                # rewrite with member 0 truncated
        items = [(n, z.read(n)) for n in z.namelist()]
    with zipfile.ZipFile(archive, "w") as z:
        for n, data in items:
            if n.endswith(f"{frames[0]['stem']}_gtFine_labelIds.png"):
                data = data[:40]
            if n.endswith(f"{frames[1]['stem']}_gtFine_instanceIds.png"):
                continue
            z.writestr(n, data)
    src = CityscapesSource(tmp_path, "val")
    with pytest.raises(RecordError, match=r"gtFine_trainvaltest\.zip::gtFine/val/.*labelIds\.png: "
                                          "not a decodable image"):
        src[0]
    with pytest.raises(RecordError, match=r"missing member gtFine/val/.*instanceIds\.png in archive"):
        src[1]
    skipping = CityscapesSource(tmp_path, "val", skip_bad=True)
    with pytest.raises(RecordError, match="all 2 records are bad"):
        skipping[0]
