"""TFDS packer: sources -> ArrayRecord pack -> tfds.data_source reader, identical records, no TF."""

import pickle
import sys

import fixtures_datasets as fx
import grain
import numpy as np
import pytest

from data_mix import tfds_pack
from data_mix.sources import CityscapesSource, GenerationSource, KITTIDepthSource, NYUv2Source, RefCOCOSource


def round_trip(source, data_dir, name, **kw):
    path = tfds_pack.pack(source, data_dir, name=name, **kw)
    assert path == data_dir / "vision_banana_pack" / name / "1.0.0"
    assert list(path.glob("vision_banana_pack-train.array_record-*"))
    packed = tfds_pack.PackedSource(data_dir, name)
    assert len(packed) == len(source) and packed.name == f"packed/{name}"
    for i in range(len(source)):
        fx.assert_records_equal(source[i], packed[i])
    return packed


@pytest.mark.parametrize("image_encoding", ["png", "raw"])
def test_cityscapes_zip_round_trip(tmp_path, image_encoding):
    fx.write_cityscapes(tmp_path / "cs", as_zip=True)
    round_trip(CityscapesSource(tmp_path / "cs", "val"), tmp_path / "packs", "cs_val",
               image_encoding=image_encoding)
    assert "tensorflow" not in sys.modules


def test_depth_normals_semantic_round_trip_and_pickle(tmp_path):
    nyu = fx.write_nyuv2(tmp_path / "nyu", normals=True)
    src = NYUv2Source(nyu["mat"], "all", normals_dir=nyu["normals_dir"], depth_key="rawDepths")
    packed = round_trip(src, tmp_path / "packs", "nyu")
    assert np.isnan(packed[0]["depth"]).any()                    # NaN survives the pack
    copy = pickle.loads(pickle.dumps(packed))
    fx.assert_records_equal(copy[4], src[4])


def test_referring_and_records_with_absent_keys(tmp_path):
    ref = fx.write_refcoco(tmp_path / "ref")
    round_trip(RefCOCOSource(ref["refs_file"], ref["instances_file"], ref["image_dir"], "val",
                             group_by="image"), tmp_path / "packs", "refcocog_val")
    gen = fx.write_generation(tmp_path / "gen")                  # first records have no image
    round_trip(GenerationSource(gen["manifest"]), tmp_path / "packs", "gen",
               keys=["image", "prompt", "target"])
    kit = fx.write_kitti(tmp_path / "kitti")
    kitti = KITTIDepthSource(kit["raw_root"], kit["depth_root"], kit["split_files"]["bts"],
                             require_depth=False)
    round_trip(kitti, tmp_path / "packs", "kitti")               # record 2 has no depth


def test_binary_mask_and_restoration_folders_round_trip(tmp_path):
    import cv2

    from data_mix.sources import BinaryMaskFolderSource, RestorationPairsSource

    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "input", "target"):
        (tmp_path / "ds" / sub).mkdir(parents=True)
    for k in range(3):
        image = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
        mask = (rng.random((9, 11)) > 0.5).astype(np.uint8) * 255
        cv2.imwrite(str(tmp_path / "ds" / "images" / f"case{k}.png"), image)
        cv2.imwrite(str(tmp_path / "ds" / "masks" / f"case{k}.png"), mask)
        cv2.imwrite(str(tmp_path / "ds" / "input" / f"rain{k}.png"), image)
        cv2.imwrite(str(tmp_path / "ds" / "target" / f"rain{k}.png"), image[::-1].copy())
    round_trip(BinaryMaskFolderSource(tmp_path / "ds"), tmp_path / "packs", "polyps")
    round_trip(RestorationPairsSource(tmp_path / "ds", kind="derain"), tmp_path / "packs", "rain")


def test_record_with_key_outside_schema_raises(tmp_path):
    gen = fx.write_generation(tmp_path / "gen")
    with pytest.raises(ValueError, match=r"generation/manifest record 2: keys \['image'\] are not in "
                                         "the pack schema"):
        tfds_pack.pack(GenerationSource(gen["manifest"]), tmp_path / "packs", name="gen")


def test_skip_bad_substitutes_are_stored_once(tmp_path):
    gen = fx.write_generation(tmp_path / "gen")
    (gen["manifest"].parent / "targets" / "0001.png").unlink()
    src = GenerationSource(gen["manifest"], skip_bad=True)
    tfds_pack.pack(src, tmp_path / "packs", name="gen", keys=["image", "prompt", "target"])
    packed = tfds_pack.PackedSource(tmp_path / "packs", "gen")
    assert len(packed) == 3
    assert [packed[i]["prompt"] for i in range(3)] == [gen["entries"][i]["prompt"] for i in (0, 2, 3)]


@pytest.mark.slow  # worker processes start in ~6 s on 2 cores
def test_grain_reads_a_pack_in_worker_processes(tmp_path):
    fx.write_cityscapes(tmp_path / "cs", frames_per_city=2)
    src = CityscapesSource(tmp_path / "cs", "val")
    tfds_pack.pack(src, tmp_path / "packs", name="cs")
    packed = tfds_pack.PackedSource(tmp_path / "packs", "cs")
    ds = (grain.MapDataset.source(packed).map(lambda r: (r["meta"]["id"], int(r["semantic"].sum())))
          .to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=2)))
    expected = [(src[i]["meta"]["id"], int(src[i]["semantic"].sum())) for i in range(len(src))]
    assert list(ds) == expected
