"""ETH3D reader: headerless float32 depth files paired with DSLR JPEGs."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import ETH3DSource, RecordError, eth3d


def test_reads_back_jpeg_pixels_and_raw_float_depth(tmp_path):
    written = fx.write_eth3d(tmp_path)
    src = ETH3DSource(tmp_path)
    assert len(src) == 2
    for i, e in enumerate(written):
        r = src[i]
        assert r["meta"]["id"] == e["id"]
        assert np.array_equal(r["image"], fx.decode_jpeg(e["jpeg_bytes"]))
        assert np.array_equal(r["depth"], e["depth"], equal_nan=True)     # inf -> NaN, exact floats
    fx.assert_pickle_round_trip(src)


def test_file_list_layout(tmp_path):
    written = fx.write_eth3d(tmp_path / "rgb")
    listing = tmp_path / "eth3d_filename_list.txt"
    listing.write_text("rgb/office/images/dslr_images/DSC_0201.JPG "
                       "rgb/office/ground_truth_depth/dslr_images/DSC_0201.JPG\n")
    src = ETH3DSource(tmp_path, file_list=listing)
    assert len(src) == 1
    assert np.array_equal(src[0]["depth"], written[1]["depth"], equal_nan=True)


def test_size_mismatch_negative_and_nan_depth(tmp_path):
    written = fx.write_eth3d(tmp_path)
    path = tmp_path / "courtyard" / "ground_truth_depth" / "dslr_images" / "DSC_0200.JPG"
    depth = np.frombuffer(path.read_bytes(), "<f4").copy()
    depth[5], depth[6] = -1.0, np.nan
    path.write_bytes(depth.tobytes())
    r = ETH3DSource(tmp_path)[0]
    assert np.isnan(r["depth"].ravel()[[5, 6]]).all()
    path.write_bytes(depth.tobytes()[:-4])
    with pytest.raises(RecordError, match=r"eth3d record 0: .*DSC_0200\.JPG: 380 bytes; expected 384 "
                                          r"\(8x12 float32\)"):
        ETH3DSource(tmp_path)[0]
    assert eth3d.HEIGHT * eth3d.WIDTH * 4 == 97_542_144
    assert written
