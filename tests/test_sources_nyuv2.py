"""NYUv2 reader: MATLAB v7.3 (HDF5) layout, splits, labels, normals folder."""

import pickle

import fixtures_datasets as fx
import h5py
import numpy as np
import pytest

from data_mix.sources import NYUv2Source, RecordError, nyuv2
from data_mix.sources.nyuv2_split import TEST_INDICES


@pytest.fixture
def nyu(tmp_path):
    return fx.write_nyuv2(tmp_path, normals=True)


def test_embedded_test_split_is_the_standard_654():
    assert len(TEST_INDICES) == 654 == len(set(TEST_INDICES))
    assert list(TEST_INDICES) == sorted(TEST_INDICES)
    assert TEST_INDICES[:6] == (1, 2, 9, 14, 15, 16) and TEST_INDICES[-1] == 1449
    assert nyuv2.NUM_LABELED - len(TEST_INDICES) == 795


def test_fixture_has_matlab_layout(nyu):
    with h5py.File(nyu["mat"], "r") as f:
        assert f["images"].shape == (6, 3, 16, 12)          # (N, C, W, H): MATLAB HxWx3xN
        assert f["depths"].shape == (6, 16, 12)
    assert nyu["mat"].read_bytes()[:10] == b"MATLAB 7.3"


def test_reads_back_test_split_exactly(nyu):
    src = NYUv2Source(nyu["mat"], "test", splits_mat=nyu["splits"], normals_dir=nyu["normals_dir"])
    assert src.indices == nyu["test"] and len(src) == 3 and src.name == "nyuv2/test"
    for i, index in enumerate(nyu["test"]):
        r = src[i]
        k = index - 1
        assert r["image"].dtype == np.uint8 and np.array_equal(r["image"], nyu["images"][k])
        assert r["depth"].dtype == np.float32 and np.array_equal(r["depth"], nyu["depths"][k])
        assert r["semantic"].dtype == np.int32
        assert np.array_equal(r["semantic"], nyu["labels"][k].astype(np.int32) - 1)
        assert r["classes"] == nyu["names"]
        np.testing.assert_allclose(r["normals"], nyu["normals"][k], atol=1e-6)
        assert (r["normals"][:2, :2] == 0).all()           # all-zero PNG pixels = invalid
        assert r["meta"]["index"] == index and r["meta"]["eval_crop"] == [45, 471, 41, 601]
    assert NYUv2Source(nyu["mat"], "train", splits_mat=nyu["splits"]).indices == nyu["train"]


def test_raw_depth_zero_becomes_nan_and_all_split(nyu):
    src = NYUv2Source(nyu["mat"], "all", depth_key="rawDepths")
    assert len(src) == 6
    d = src[0]["depth"]
    assert np.isnan(d[0, :3]).all() and np.array_equal(d[1:], nyu["raw_depths"][0][1:])
    assert "normals" not in src[0]


def test_embedded_split_needs_the_full_file(nyu):
    with pytest.raises(ValueError, match="holds 6 images, not 1449.*splits_mat"):
        NYUv2Source(nyu["mat"], "test")
    with pytest.raises(ValueError, match=r"indices \[7\] out of range 1\.\.6"):
        NYUv2Source(nyu["mat"], indices=[1, 7])


def test_pickle_reopens_hdf5_in_the_copy(nyu):
    src = NYUv2Source(nyu["mat"], "all")
    src[0]
    copy = pickle.loads(pickle.dumps(src))
    assert copy._h5 is None
    fx.assert_records_equal(src[5], copy[5])


def test_out_of_range_label_and_missing_normals_raise(nyu):
    with h5py.File(nyu["mat"], "r+") as f:
        labels = f["labels"][...]
        labels[1, 3, 4] = 99
        f["labels"][...] = labels
    src = NYUv2Source(nyu["mat"], "all", normals_dir=nyu["normals_dir"])
    with pytest.raises(RecordError, match=r"nyuv2/all record 1: .*nyu_depth_v2_labeled\.mat\[labels\]\[2\]: "
                                          r"label values \{99\}"):
        src[1]
    (nyu["normals_dir"] / "000002_normal.png").unlink()
    with pytest.raises(RecordError, match=r"missing normals .*000002_normal\.png"):
        src[2]


def test_npy_normals_default_to_the_vision_banana_frame(nyu):
    n = np.zeros((12, 16, 3), np.float32)
    n[..., 1] = 2.0                                         # pointing up, any length
    for p in nyu["normals_dir"].iterdir():
        p.unlink()
    np.save(nyu["normals_dir"] / "000000_normal.npy", n)
    r = NYUv2Source(nyu["mat"], indices=[1], normals_dir=nyu["normals_dir"])[0]
    assert np.array_equal(r["normals"][..., 1], np.ones((12, 16), np.float32))
    assert r["meta"]["normals_path"].endswith("000000_normal.npy")
