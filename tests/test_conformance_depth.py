"""Depth readers against the reference projects' readers (not our own fixture writer).

Each fixture is written here from the reference reader's documented behaviour: its file names,
dtypes, scales, orientation and masks; each test asserts our record equals what that reader
would hand its evaluation (invalid pixels as NaN). References, by test:

  NYUv2    BTS utils/extract_official_train_test_set_from_mat.py: h5py, rawDepths[i].T metres,
           images[i].T, testNdxs 1-based from splits.mat (ZoeDepth reads BTS's extraction)
  KITTI    Marigold src/dataset/kitti_dataset.py: one folder holding both trees, lines
           "rgb depth focal", depth PNG / 256, "None" lines dropped, benchmark crop 352x1216
  DIODE    diode-devkit diode.py: np.load(depth).squeeze(), np.load(mask) 1 = valid
  ETH3D    Marigold src/dataset/eth3d_dataset.py: np.frombuffer(float32) row-major, inf = invalid
  iBims-1  evaluate_ibims.py (official): loadmat(...)["data"], valid = mask_transp *
           mask_invalid * (depth != 0)
  ScanNet  Marigold src/dataset/scannet_dataset.py: "color depth" lines, depth PNG / 1000
  VKITTI2  Marigold src/dataset/vkitti_dataset.py: depth PNG / 100, 655.35 m (sky) beyond range
"""

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from data_mix import sources
from eval import depth as depth_eval
from eval.metrics import depth_presets


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    # cv2 writes BGR: a colour image is given RGB here and flipped, as the datasets store RGB.
    data = arr[..., ::-1] if arr.ndim == 3 else arr
    assert cv2.imwrite(str(path), np.ascontiguousarray(data))
    return path


def _nan_where(depth, invalid):
    out = depth.astype(np.float32).copy()
    out[invalid] = np.nan
    return out


# ----------------------------------------------------------------------------------- NYUv2

def _write_nyu_mat(path, images, depths, raw):
    """The labeled .mat as MATLAB v7.3 stores it: HxWx3xN etc. seen by h5py axes reversed."""
    n, h, w, _ = images.shape
    with h5py.File(path, "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)               # (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)                  # (N, W, H)
        f["rawDepths"] = raw.transpose(0, 2, 1)
        f["labels"] = np.zeros((n, w, h), np.uint16)
        names = f.create_dataset("names", (1, 1), dtype=h5py.ref_dtype)
        names[0, 0] = f.create_dataset("#refs#/a", data=np.array([[ord(c)] for c in "wall"], np.uint16)).ref
        scenes = f.create_dataset("sceneTypes", (1, n), dtype=h5py.ref_dtype)
        for i in range(n):
            scenes[0, i] = f.create_dataset(f"#refs#/s{i}", data=np.array([[ord(c)] for c in "kitchen"],
                                                                          np.uint16)).ref


@pytest.fixture(scope="module")
def nyu_bts(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu_bts")
    rng = np.random.default_rng(1)
    n, h, w = 3, 480, 640
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    filled = rng.uniform(1.0, 9.0, (n, h, w)).astype(np.float32)
    raw = filled * rng.uniform(0.9, 1.1, (n, h, w)).astype(np.float32)     # differs everywhere
    raw[:, 100:140, 200:260] = 0.0                                          # holes inside the crop
    _write_nyu_mat(root / "nyu_depth_v2_labeled.mat", images, filled, raw)
    scipy.io.savemat(root / "splits.mat", {"testNdxs": np.array([[2.0], [3.0]]), "trainNdxs": np.array([[1.0]])})
    return {"root": root, "images": images, "filled": filled, "raw": raw, "test": [2, 3]}


def test_nyuv2_as_bts_reads(nyu_bts):
    d = nyu_bts
    f = h5py.File(d["root"] / "nyu_depth_v2_labeled.mat", "r")
    src = sources.NYUv2Source.for_depth_benchmark(d["root"] / "nyu_depth_v2_labeled.mat",
                                                  splits_mat=d["root"] / "splits.mat")
    assert [r["meta"]["index"] for r in src] == d["test"]
    for r, idx in zip(src, d["test"], strict=True):
        bts_depth = f["rawDepths"][idx - 1].T                   # BTS: depth_raw[i, :, :].T
        np.testing.assert_array_equal(r["image"], f["images"][idx - 1].T)
        np.testing.assert_array_equal(r["depth"], _nan_where(bts_depth, bts_depth == 0))
        assert r["meta"]["depth_key"] == "rawDepths"
    assert "rawDepths" in src.notes[0]
    inpainted = sources.NYUv2Source.for_depth_benchmark(d["root"] / "nyu_depth_v2_labeled.mat",
                                                        depth="inpainted", splits_mat=d["root"] / "splits.mat")
    np.testing.assert_array_equal(inpainted[0]["depth"], d["filled"][1])
    with pytest.raises(ValueError, match="benchmark depth 'filled'"):
        sources.NYUv2Source.for_depth_benchmark(d["root"] / "nyu_depth_v2_labeled.mat", depth="filled")


def test_eval_depth_nyuv2_scores_raw_depths(nyu_bts, tmp_path):
    """Predictions equal to the in-painted maps score perfectly only with --nyu-depth inpainted."""
    d = nyu_bts
    preds = tmp_path / "filled"
    preds.mkdir()
    for idx in d["test"]:
        np.save(preds / f"{idx:04d}.npy", d["filled"][idx - 1])
    common = ["--dataset", "nyuv2", "--nyuv2-mat", str(d["root"] / "nyu_depth_v2_labeled.mat"),
              "--nyuv2-splits", str(d["root"] / "splits.mat"), "--predictions", str(preds),
              "--name", "ours",
              "--no-progress", "--worst", "0"]
    raw = depth_eval.main([*common, "--out", str(tmp_path / "raw")])["ours"]["result"]["metrics"]
    inpainted = depth_eval.main([*common, "--nyu-depth", "inpainted", "--out", str(tmp_path / "inp")])
    assert inpainted["ours"]["result"]["metrics"]["abs_rel"] == 0.0
    assert raw["abs_rel"] > 0.01                    # scored against rawDepths, not the filled maps
    crop = (slice(45, 471), slice(41, 601))
    expect = np.mean([np.nanmean(np.abs(d["filled"][i - 1][crop] - g) / g)
                      for i in d["test"] for g in [np.where(d["raw"][i - 1] > 0, d["raw"][i - 1], np.nan)[crop]]])
    assert raw["abs_rel"] == pytest.approx(expect, rel=1e-5)
    results = (tmp_path / "raw" / "results.json").read_text()
    assert '"nyu_depth": "raw"' in results and "rawDepths" in (tmp_path / "raw" / "report.md").read_text()


def test_nyuv2_normals_named_as_dsine_and_marigold(nyu_bts, tmp_path):
    """DSINE's test/{k:06d}_normal.png and Marigold's {k:06d}_normal.npy use k = testNdxs - 1."""
    d = nyu_bts
    rng = np.random.default_rng(8)
    dsine, marigold = tmp_path / "dsine_eval/nyuv2/test", tmp_path / "marigold_nyu"
    dsine.mkdir(parents=True)
    marigold.mkdir()
    written = {}
    for idx in d["test"]:
        n = rng.normal(size=(480, 640, 3)).astype(np.float32)
        n[..., 2] = np.abs(n[..., 2]) + 0.1
        n /= np.linalg.norm(n, axis=2, keepdims=True)
        written[idx] = n
        np.save(marigold / f"{idx - 1:06d}_normal.npy", n)                       # Marigold's axes
        rgb = np.round((n * [-1, 1, 1] + 1) / 2 * 255).astype(np.uint8)            # DSINE's axes
        _png(dsine / f"{idx - 1:06d}_normal.png", rgb)
    mat, splits = d["root"] / "nyu_depth_v2_labeled.mat", d["root"] / "splits.mat"
    for folder, atol in ((marigold, 1e-6), (dsine, 0.02)):
        src = sources.NYUv2Source(mat, "test", splits_mat=splits, normals_dir=folder)
        for r in src:
            np.testing.assert_allclose(r["normals"], written[r["meta"]["index"]], atol=atol)


# ----------------------------------------------------------------------------------- KITTI

def test_kitti_as_marigold_reads(tmp_path):
    rng = np.random.default_rng(2)
    h, w = 375, 1242
    root = tmp_path / "kitti_eigen_split_test"           # Marigold's tar: both trees in one folder
    lines, frames = [], []
    for frame, with_gt in ((69, True), (54, False)):
        rgb_rel = f"2011_09_26/2011_09_26_drive_0002_sync/image_02/data/{frame:010d}.png"
        depth_rel = f"2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/{frame:010d}.png"
        _png(root / rgb_rel, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if with_gt:
            png = rng.integers(1, 80 * 256, (h, w)).astype(np.uint16)
            png[rng.random((h, w)) < 0.8] = 0                   # sparse LiDAR: 0 = no return
            _png(root / depth_rel, png)
            frames.append(png)
        lines.append(f"{rgb_rel} {depth_rel if with_gt else 'None'} 721.5377")
    split = tmp_path / "eigen_test_files_with_gt.txt"
    split.write_text("\n".join(lines) + "\n")
    src = sources.KITTIDepthSource(root, root, split)
    assert len(src) == 1                                     # Marigold drops the "None" lines
    r = src[0]
    marigold = frames[0] / 256.0
    np.testing.assert_allclose(r["depth"], _nan_where(marigold, marigold <= 1e-5), rtol=0, atol=1e-6)
    top, left, ch, cw = r["meta"]["kb_crop"]
    assert (top, left, ch, cw) == (h - 352, int((w - 1216) / 2), 352, 1216)     # kitti_benchmark_crop
    assert r["meta"]["intrinsics"]["fx"] == pytest.approx(721.5377)
    # Marigold's Eigen mask is drawn on the cropped 352x1216 frame (kitti_dataset._get_valid_mask).
    marigold_mask = np.zeros((352, 1216), bool)
    marigold_mask[int(0.3324324 * 352):int(0.91351351 * 352), int(0.0359477 * 1216):int(0.96405229 * 1216)] = True
    np.testing.assert_array_equal(depth_presets.eval_mask("eigen_kitti", (352, 1216)), marigold_mask)


# ----------------------------------------------------------------------------------- DIODE

def test_diode_as_devkit_reads(tmp_path):
    rng = np.random.default_rng(3)
    h, w = 12, 16
    stem = "val/indoors/scene_00019/scan_00183/00019_00183_indoors_000_010"
    _png(tmp_path / f"{stem}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    depth = rng.uniform(0.5, 40.0, (h, w, 1)).astype(np.float32)            # (H, W, 1) as released
    mask = (rng.random((h, w)) > 0.3).astype(np.float32)
    normals = rng.normal(size=(h, w, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    normals[0, :4] = 0.0                                                     # (0,0,0) = invalid
    np.save(tmp_path / f"{stem}_depth.npy", depth)
    np.save(tmp_path / f"{stem}_depth_mask.npy", mask)
    np.save(tmp_path / f"{stem}_normal.npy", normals)
    src = sources.DIODESource(tmp_path, "val", with_normals=True)
    r = src[0]
    devkit_depth, devkit_mask = depth.squeeze(), mask                        # DIODE.__getitem__
    np.testing.assert_array_equal(r["depth"], _nan_where(devkit_depth, devkit_mask == 0))
    np.testing.assert_allclose(r["normals"], normals, atol=1e-6)
    assert "does not document the axes" in src.notes[0]
    # Marigold's list (paths relative to diode/val) read with root = the val folder.
    listing = tmp_path / "diode_val_indoor_filename_list.txt"
    listing.write_text(f"{stem[4:]}.png {stem[4:]}_depth.npy {stem[4:]}_depth_mask.npy\n")
    again = sources.DIODESource(tmp_path / "val", file_list=listing)[0]
    np.testing.assert_array_equal(again["depth"], r["depth"])


# ----------------------------------------------------------------------------------- ETH3D

def test_eth3d_as_marigold_reads(tmp_path):
    rng = np.random.default_rng(4)
    h, w = 8, 12                                   # the real files are 4032x6048; same layout
    rgb_rel = "rgb/office/images/dslr_images/DSC_0219.JPG"
    depth_rel = "depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG"
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    (tmp_path / rgb_rel).parent.mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / rgb_rel), image[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 100])
    depth = rng.uniform(0.5, 30.0, (h, w)).astype(np.float32)
    depth[2, 3:7] = np.inf                                                   # no laser return
    (tmp_path / depth_rel).parent.mkdir(parents=True)
    depth.astype("<f4").tofile(tmp_path / depth_rel)                         # headerless, row-major
    listing = tmp_path / "eth3d_filename_list.txt"
    listing.write_text(f"{rgb_rel} {depth_rel}\n")
    r = sources.ETH3DSource(tmp_path, file_list=listing)[0]
    marigold = np.frombuffer((tmp_path / depth_rel).read_bytes(), np.float32).copy()
    marigold[marigold == np.inf] = 0.0
    marigold = marigold.reshape(h, w)
    np.testing.assert_array_equal(r["depth"], _nan_where(marigold, marigold <= 1e-5))


# --------------------------------------------------------------------------------- iBims-1

def test_ibims1_as_official_reads(tmp_path):
    rng = np.random.default_rng(5)
    h, w = 12, 16
    depth = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
    depth[0, :3] = 0.0
    mask_invalid = (rng.random((h, w)) > 0.2).astype(np.uint8)             # 1 = valid
    mask_transp = (rng.random((h, w)) > 0.2).astype(np.uint8)              # 0 = transparent
    calib = np.array([[559.6, 0, 326.0], [0, 559.6, 244.0], [0, 0, 1]])
    data = {"rgb": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "depth": depth,
            "mask_invalid": mask_invalid, "mask_transp": mask_transp, "calib": calib,
            "edges": np.zeros((h, w), np.uint8)}
    scipy.io.savemat(tmp_path / "corridor_01.mat", {"data": data})
    (tmp_path / "imagelist.txt").write_text("corridor_01\n")
    r = sources.IBimsSource(tmp_path)[0]
    official = scipy.io.loadmat(tmp_path / "corridor_01.mat")["data"]
    gt = official["depth"][0][0]
    valid = official["mask_transp"][0][0] * official["mask_invalid"][0][0] * (gt != 0)
    np.testing.assert_array_equal(r["depth"], _nan_where(gt, valid == 0))
    np.testing.assert_array_equal(r["image"], official["rgb"][0][0])
    assert r["meta"]["intrinsics"]["fx"] == pytest.approx(559.6)


# --------------------------------------------------------------------------------- ScanNet

def test_scannet_as_marigold_reads(tmp_path):
    rng = np.random.default_rng(6)
    h, w = 12, 16
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    (tmp_path / "scene0406_02/color").mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / "scene0406_02/color/000300.jpg"), image[..., ::-1].copy())
    mm = rng.integers(300, 9000, (h, w)).astype(np.uint16)
    mm[3, :5] = 0
    _png(tmp_path / "scene0406_02/depth/000300.png", mm)
    listing = tmp_path / "scannet_val_sampled_list_800_1.txt"
    listing.write_text("scene0406_02/color/000300.jpg scene0406_02/depth/000300.png\n")
    r = sources.ScanNetSource(tmp_path, file_list=listing)[0]
    marigold = mm / 1000.0
    np.testing.assert_allclose(r["depth"], _nan_where(marigold, marigold <= 1e-3), rtol=0, atol=1e-6)
    assert r["meta"]["id"] == "scene0406_02/000300"


# --------------------------------------------------------------------------------- VKITTI2

def test_vkitti2_as_marigold_reads(tmp_path):
    rng = np.random.default_rng(7)
    h, w = 12, 16
    base = tmp_path / "Scene01/clone/frames"
    (base / "rgb/Camera_0").mkdir(parents=True)
    assert cv2.imwrite(str(base / "rgb/Camera_0/rgb_00000.jpg"),
                       rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    cm = rng.integers(100, 7900, (h, w)).astype(np.uint16)
    cm[:3] = 65535                                                           # sky: 655.35 m
    _png(base / "depth/Camera_0/depth_00000.png", cm)
    r = sources.VKITTI2Source(tmp_path)[0]
    marigold = cm / 100.0
    np.testing.assert_allclose(r["depth"], _nan_where(marigold, ~((marigold > 1e-5) & (marigold < 80))),
                               rtol=0, atol=1e-6)
