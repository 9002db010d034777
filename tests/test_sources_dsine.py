"""Normal conventions and the DSINE evaluation layout (8- and 16-bit normal PNGs)."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import DSINENormalsSource, RecordError, normal_frames


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


def _exr(path, planes: dict):
    import OpenEXR

    with OpenEXR.File({"type": OpenEXR.scanlineimage}, planes) as f:
        f.write(str(path))


def test_exr_normals_missing_files_and_convention_override(tmp_path):
    written = fx.write_dsine_normals(tmp_path / "ibims", n=2)
    stem = tmp_path / "ibims" / "test" / "000000"
    stem.with_name("000000_normal.png").unlink()
    n = np.zeros((12, 16, 3), np.float32)
    n[..., 2] = 1.0
    n[0, 0] = [0.0, 0.0, 0.4]                                  # |n| <= 0.5: DSINE's mask drops it
    _exr(stem.with_name("000000_normal.exr"), {c: n[..., i].copy() for i, c in enumerate("RGB")})
    src = DSINENormalsSource(tmp_path / "ibims", split_file=written["split_file"])
    r = src[0]
    assert r["meta"]["normals_format"] == "exr" and (r["normals"][0, 0] == 0).all()
    assert np.allclose(r["normals"][1:, :, 2], 1.0)
    flipped = DSINENormalsSource(tmp_path / "ibims", normals_convention="opencv")[0]
    assert np.allclose(flipped["normals"][1:, :, 2], -1.0)      # override applies to every format
    (tmp_path / "ibims" / "test" / "000001_normal.png").unlink()
    with pytest.raises(RecordError, match=r"none of test/000001_normal\.exr, test/000001_normal\.png, "
                                          r"test/000001_normal\.npy"):
        src[1]


def test_unreadable_exr_and_missing_channels_raise(tmp_path):
    written = fx.write_dsine_normals(tmp_path / "sintel", n=2)
    for i in range(2):
        (tmp_path / "sintel" / "test" / f"00000{i}_normal.png").unlink()
    (tmp_path / "sintel" / "test" / "000000_normal.exr").write_bytes(b"\x76\x2f\x31\x01 not really")
    _exr(tmp_path / "sintel" / "test" / "000001_normal.exr", {"Z": np.ones((12, 16), np.float32)})
    src = DSINENormalsSource(tmp_path / "sintel", split_file=written["split_file"])
    with pytest.raises(RecordError, match=r"000000_normal\.exr: not a readable OpenEXR file"):
        src[0]
    with pytest.raises(RecordError, match=r"000001_normal\.exr: EXR channels \['Z'\]; expected R, G, B"):
        src[1]


def test_marigold_pair_list_with_a_bad_normal_suffix_raises(tmp_path):
    fx.write_dsine_normals(tmp_path / "nyu", n=1)
    listing = tmp_path / "list.txt"
    listing.write_text("test/000000_img.png test/000000_normal.tif\n")
    with pytest.raises(RecordError, match=r"000000_normal\.tif: expected a \.exr, \.png or \.npy"):
        DSINENormalsSource(tmp_path / "nyu", split_file=listing)[0]
