"""ScanNet reader: colour JPEG + millimetre depth PNG per frame, intrinsics, resizing."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import RecordError, ScanNetSource


def test_reads_back_jpeg_pixels_and_millimetre_depth(tmp_path):
    written = fx.write_scannet(tmp_path)
    src = ScanNetSource(tmp_path)
    assert len(src) == 4
    for i, e in enumerate(written):
        r = src[i]
        assert r["meta"]["id"] == e["id"]
        assert np.array_equal(r["image"], fx.decode_jpeg(e["jpeg_bytes"]))
        assert np.array_equal(r["depth"], e["depth"], equal_nan=True)      # raw / 1000, 0 -> NaN
        assert r["meta"]["intrinsics"]["fx"] == pytest.approx(577.59)
    fx.assert_pickle_round_trip(src)


def test_colour_at_other_resolution_is_resized_to_depth(tmp_path):
    written = fx.write_scannet(tmp_path, color_scale=2, scenes=("scene0002_00",), per_scene=1)
    r = ScanNetSource(tmp_path)[0]
    assert r["image"].shape == (12, 16, 3) and r["meta"]["image_size_original"] == [24, 32]
    assert np.array_equal(r["depth"], written[0]["depth"], equal_nan=True)
    with pytest.raises(RecordError, match="resize_image_to_depth=False"):
        ScanNetSource(tmp_path, resize_image_to_depth=False)[0]


def test_frames_sort_numerically_and_corrupt_depth_raises(tmp_path):
    fx.write_scannet(tmp_path, scenes=("scene0000_00",), per_scene=12)
    src = ScanNetSource(tmp_path)
    assert [src[i]["meta"]["id"] for i in (0, 1, 2, 11)] == [
        "scene0000_00/0", "scene0000_00/1", "scene0000_00/2", "scene0000_00/11"]
    fx.corrupt_file(tmp_path / "scene0000_00" / "depth" / "1.png")
    with pytest.raises(RecordError, match=r"scannet record 1: .*depth/1\.png: not a decodable image"):
        src[1]
