"""Virtual KITTI 2 reader: centimetre depth with the sky code, intrinsics, derived normals."""

import fixtures_datasets as fx
import numpy as np
import pytest

from data_mix.sources import VKITTI2Source


@pytest.fixture
def vk(tmp_path):
    return fx.write_vkitti2(tmp_path / "vkitti", normals_root=tmp_path / "normals")


def test_reads_back_depth_sky_intrinsics_and_normals(tmp_path, vk):
    src = VKITTI2Source(tmp_path / "vkitti", normals_root=tmp_path / "normals")
    assert len(src) == 4
    for i, e in enumerate(vk):
        r = src[i]
        assert r["meta"]["id"] == e["id"]
        assert np.array_equal(r["image"], fx.decode_jpeg(e["jpeg_bytes"]))
        assert np.array_equal(r["depth"], e["depth"], equal_nan=True)      # raw / 100, sky NaN
        np.testing.assert_allclose(r["normals"], e["normals"], atol=1e-6)  # 16-bit DSINE PNG
        assert (r["normals"][e["sky"]] == 0).all()
        assert r["meta"]["intrinsics"] == {"fx": 725.0087, "fy": 725.0087, "cx": 620.5, "cy": 187.0}
    fx.assert_pickle_round_trip(src)


def test_sky_as_inf_and_scene_filter(tmp_path, vk):
    src = VKITTI2Source(tmp_path / "vkitti", scenes=["Scene02"], sky_as_inf=True)
    assert len(src) == 2 and src[0]["meta"]["id"].startswith("Scene02/")
    d = src[0]["depth"]
    assert np.isposinf(d[vk[2]["sky"]]).all() and np.isfinite(d[~vk[2]["sky"]]).all()
    with pytest.raises(FileNotFoundError, match="variations"):
        VKITTI2Source(tmp_path / "vkitti", variations=("fog",))
