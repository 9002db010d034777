"""KITTI Eigen-split reader: split-file layouts, annotated depth quantization, crop info."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import KITTIDepthSource, RecordError, kitti


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return fx.write_kitti(tmp_path_factory.mktemp("kitti"))


@pytest.mark.parametrize("style", ["bts", "monodepth", "monodepth2"])
def test_every_split_layout_reads_the_same_frames(kit, style):
    src = KITTIDepthSource(kit["raw_root"], kit["depth_root"], kit["split_files"][style])
    assert (src.num_listed, src.num_without_depth, len(src)) == (4, 1, 3)
    with_depth = [f for f in kit["frames"] if f["depth_raw"] is not None]
    for i, f in enumerate(with_depth):
        r = src[i]
        assert r["meta"]["id"] == f["id"]
        assert np.array_equal(r["image"], f["image"])
        assert r["depth"].dtype == np.float32
        assert np.array_equal(r["depth"], f["depth"], equal_nan=True)   # raw / 256, 0 -> NaN
        assert np.isnan(r["depth"][f["depth_raw"] == 0]).all()
    fx.assert_pickle_round_trip(src)


def test_meta_carries_crop_and_intrinsics(kit):
    r = KITTIDepthSource(kit["raw_root"], kit["depth_root"], kit["split_files"]["bts"])[0]
    m = r["meta"]
    assert m["image_size"] == [375, 1242]
    assert m["kb_crop"] == [23, 13, 352, 1216]
    assert m["eval_crops"]["garg"] == [int(0.40810811 * 375), int(0.99189189 * 375),
                                       int(0.03594771 * 1242), int(0.96405229 * 1242)]
    assert m["intrinsics"] == {"fx": 721.5377, "fy": 721.5377, "cx": 609.5593, "cy": 172.854}
    top, left, h, w = m["kb_crop"]
    assert r["image"][top:top + h, left:left + w].shape == (352, 1216, 3)


def test_frames_without_depth_are_kept_on_request(kit):
    src = KITTIDepthSource(kit["raw_root"], kit["depth_root"], kit["split_files"]["monodepth2"],
                           require_depth=False)
    assert len(src) == 4
    assert "depth" not in src[2] and src[2]["meta"]["id"] == kit["frames"][2]["id"]


def test_parse_split_line_rejects_garbage():
    with pytest.raises(ValueError, match=r"split\.txt:3: cannot parse"):
        kitti.parse_split_line("foo bar", what="split.txt:3")


def test_missing_named_depth_and_8bit_depth_raise(tmp_path):
    kit = fx.write_kitti(tmp_path, frames=fx.KITTI_FRAMES[:2])
    frames = kit["frames"]
    gt0 = next(kit["depth_root"].rglob(f"{frames[0]['id'].split('/')[-1]}.png"))
    gt0.unlink()
    gt1 = [p for p in kit["depth_root"].rglob("*.png")][0]
    gt1.write_bytes(fx.png_bytes((frames[1]["depth_raw"] // 256).astype(np.uint8)))
    src = KITTIDepthSource(kit["raw_root"], kit["depth_root"], kit["split_files"]["bts"])
    assert len(src) == 2                             # the line names the file: still listed
    with pytest.raises(RecordError, match=r"kitti/eigen_test_bts record 0: missing file .*0000000069\.png"):
        src[0]
    with pytest.raises(RecordError, match=r"0000000054\.png: expected a uint16 image, got uint8"):
        src[1]
