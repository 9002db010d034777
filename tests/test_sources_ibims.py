"""iBims-1 reader: per-image MATLAB v5 struct with validity and transparency masks."""

import fixtures_datasets as fx
import numpy as np
import pytest
import scipy.io

from data_mix.sources import IBimsSource, RecordError


def test_reads_back_rgb_masked_depth_and_calibration(tmp_path):
    written = fx.write_ibims(tmp_path)
    src = IBimsSource(tmp_path / "ibims1_core_mat")
    assert len(src) == 2
    for i, e in enumerate(written):
        r = src[i]
        assert np.array_equal(r["image"], e["image"])
        assert np.array_equal(r["depth"], e["depth"], equal_nan=True)
        assert np.isnan(r["depth"][0, 0]) and np.isnan(r["depth"][1, :4]).all()
        assert np.isnan(r["depth"][2, 2:5]).all()
        assert r["meta"]["id"] == e["name"]
        assert r["meta"]["intrinsics"] == {"fx": 559.6, "fy": 558.7, "cx": 325.3, "cy": 241.8}
    fx.assert_pickle_round_trip(src)


def test_missing_field_and_missing_file_raise(tmp_path):
    written = fx.write_ibims(tmp_path)
    folder = tmp_path / "ibims1_core_mat"
    scipy.io.savemat(folder / f"{written[0]['name']}.mat",
                     {"data": {"rgb": written[0]["image"], "depth": np.ones((12, 16))}})
    (folder / f"{written[1]['name']}.mat").unlink()
    src = IBimsSource(folder)
    with pytest.raises(RecordError, match=r"ibims1 record 0: .*corridor_01\.mat: struct 'data' has no "
                                          r"field 'mask_invalid'"):
        src[0]
    with pytest.raises(RecordError, match=r"missing file .*office_03\.mat"):
        src[1]
