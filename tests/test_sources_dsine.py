"""Normal conventions and the DSINE evaluation layout (8- and 16-bit normal PNGs)."""

import numpy as np
import pytest

import fixtures_datasets as fx
from data_mix.sources import DSINENormalsSource, RecordError
from data_mix.sources import normal_frames


def test_conventions_map_known_directions_to_the_vision_banana_frame():
    facing = {"vision_banana": [0, 0, 1], "opencv": [0, 0, -1], "dsine": [0, 0, 1]}
    up = {"vision_banana": [0, 1, 0], "opencv": [0, -1, 0], "dsine": [0, 1, 0]}
    right = {"vision_banana": [1, 0, 0], "opencv": [1, 0, 0], "dsine": [-1, 0, 0]}
    for conv in facing:
        stored = np.array([[facing[conv], up[conv], right[conv], [0, 0, 0]]], np.float32)
        vb = normal_frames.to_vision_banana(stored * 3.0, conv, what="t")
        assert np.array_equal(vb[0], [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]]), conv
    # DSINE's PNG of a left-facing normal is red-ish, as Vision Banana renders it.
    rgb = np.array([[[255, 128, 128]]], np.uint8)
    assert normal_frames.from_rgb(rgb, "dsine", what="t")[0, 0, 0] < -0.99
    with pytest.raises(ValueError, match="unknown normal convention 'omni'"):
        normal_frames.check_convention("omni")


@pytest.mark.parametrize("bits", [8, 16])
def test_reads_back_images_normals_and_intrinsics(tmp_path, bits):
    written = fx.write_dsine_normals(tmp_path / "nyuv2", bits=bits)
    src = DSINENormalsSource(tmp_path / "nyuv2", split_file=written["split_file"])
    assert len(src) == 3 and src.name == "dsine/nyuv2"
    for i, e in enumerate(written["items"]):
        r = src[i]
        assert np.array_equal(r["image"], e["image"])
        np.testing.assert_allclose(r["normals"], e["normals"], atol=1e-6)
        assert (r["normals"][-1] == 0).all()
        assert np.allclose(np.linalg.norm(r["normals"][:-1], axis=-1), 1, atol=1e-5)
        assert r["meta"]["intrinsics"]["fx"] == pytest.approx(518.86)
    fx.assert_pickle_round_trip(src)
    assert len(DSINENormalsSource(tmp_path / "nyuv2")) == 3                # glob, no split file


def test_grey_normal_png_raises(tmp_path):
    written = fx.write_dsine_normals(tmp_path / "scannet")
    (tmp_path / "scannet" / "test" / "000001_normal.png").write_bytes(
        fx.png_bytes(np.zeros((12, 16), np.uint8)))
    src = DSINENormalsSource(tmp_path / "scannet", split_file=written["split_file"])
    with pytest.raises(RecordError, match=r"dsine/scannet record 1: .*000001_normal\.png: expected a "
                                          r"3-channel image"):
        src[1]
