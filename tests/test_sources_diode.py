"""DIODE reader: depth npy + validity mask + normals npy in its native folder tree."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import DIODESource, RecordError


@pytest.fixture
def diode(tmp_path):
    return fx.write_diode(tmp_path)


def test_reads_back_depth_mask_and_normals(tmp_path, diode):
    src = DIODESource(tmp_path, "val", domain="all", with_normals=True)
    assert len(src) == len(diode) == 4
    for i, e in enumerate(diode):
        r = src[i]
        assert np.array_equal(r["image"], e["image"])
        assert r["depth"].dtype == np.float32
        assert np.array_equal(r["depth"], e["depth"], equal_nan=True)      # NaN outside the mask
        np.testing.assert_allclose(r["normals"], e["normals"], atol=1e-6)
        assert r["normals"][..., 2].min() > 0                              # faces the camera
        assert r["meta"]["domain"] == e["domain"]
        assert r["meta"]["depth_mask_path"].endswith("_depth_mask.npy")
    fx.assert_pickle_round_trip(src)


def test_domain_filter_and_file_list(tmp_path, diode):
    indoors = DIODESource(tmp_path, domain="indoors")
    assert len(indoors) == 2 and "normals" not in indoors[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{diode[3]['rel']}.png {diode[3]['rel']}_depth.npy\n")
    src = DIODESource(tmp_path, file_list=listing)
    assert len(src) == 1 and np.array_equal(src[0]["image"], diode[3]["image"])


def test_negative_and_nan_depth_become_invalid_and_bad_mask_raises(tmp_path, diode):
    stem = tmp_path / diode[0]["rel"]
    depth = np.load(f"{stem}_depth.npy")
    depth[0, 0, 0], depth[0, 1, 0] = -3.0, np.nan
    np.save(f"{stem}_depth.npy", depth)
    mask = np.ones(depth.shape[:2], np.float32)
    np.save(f"{stem}_depth_mask.npy", mask)
    r = DIODESource(tmp_path, domain="all")[0]
    assert np.isnan(r["depth"][0, :2]).all() and np.isfinite(r["depth"][1:]).all()
    mask[2, 2] = 7
    np.save(f"{stem}_depth_mask.npy", mask)
    with pytest.raises(RecordError, match=r"_depth_mask\.npy: mask values .*expected 0/1"):
        DIODESource(tmp_path, domain="all")[0]
    fx.corrupt_file(f"{stem}_depth.npy")
    with pytest.raises(RecordError, match=r"diode/val/all record 0: .*_depth\.npy: not a readable \.npy"):
        DIODESource(tmp_path, domain="all")[0]


def test_opencv_normals_convention(tmp_path):
    written = fx.write_diode(tmp_path, per_domain=1, normals_convention="opencv")
    src = DIODESource(tmp_path, domain="all", with_normals=True, normals_convention="opencv")
    np.testing.assert_allclose(src[0]["normals"], written[0]["normals"], atol=1e-6)
    raw = np.load(tmp_path / f"{written[0]['rel']}_normal.npy")
    assert raw[..., 2].max() < 0                                          # stored facing -z
