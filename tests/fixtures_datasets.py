"""Writers of tiny datasets in their REAL on-disk formats, for tests of readers and evaluation.

Each `write_*` function creates files exactly as the official release lays them out (folder
names, file names, encodings, bit depths, MATLAB/HDF5 layouts, zip archives) under a folder
the caller gives (pytest's `tmp_path`), and returns what it wrote as plain numpy arrays so a
test can compare a reader's output with the ground truth. Contents are seeded random, so two
calls with the same arguments write identical files.

Conventions of the returned ground truth:
* images: uint8 (H, W, 3) RGB. JPEG datasets are lossy: their entries also carry `jpeg_bytes`;
  `decode_jpeg(bytes)` gives the exact pixels any reader must return.
* depth: the float32 metres the dataset's quantization represents (e.g. KITTI raw / 256), NaN
  where the file marks "no data"; the raw integer map is given too where one exists.
* normals: float32 unit vectors in the Vision Banana frame (x right, y up, z toward camera),
  0-vector where invalid, plus the stored array/PNG in the dataset's own convention.

Writers: write_cityscapes, write_nyuv2, write_kitti, write_diode, write_ibims, write_eth3d,
write_scannet, write_vkitti2, write_dsine_normals, write_coco, write_refcoco, write_generation.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import zipfile

import cv2
import numpy as np

# Cityscapes ids used to paint fixtures: stuff ids (some ignored, e.g. 0, 4, 9) and the 8
# evaluated instance classes (person..bicycle).
_CS_STUFF_IDS = np.array([0, 1, 4, 6, 7, 8, 9, 11, 13, 17, 19, 20, 21, 22, 23], np.uint8)
_CS_INSTANCE_IDS = np.array([24, 25, 26, 27, 28, 31, 32, 33], np.uint8)


# ----------------------------------------------------------------------------------- helpers

def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_image(rng: np.random.Generator, h: int, w: int, smooth: bool = False) -> np.ndarray:
    """uint8 (h, w, 3) RGB; `smooth` gives low-frequency content that JPEG keeps well."""
    if not smooth:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (max(h // 8, 1), max(w // 8, 1), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG of uint8/uint16 (H, W) or RGB (H, W, 3) (RGB order in, stored as the file expects)."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:, :, ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    assert ok
    return buf.tobytes()


def jpeg_bytes(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """The exact RGB pixels of JPEG bytes (OpenCV's decoder, as the readers use)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _unit_normals(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 (h, w, 3) random unit normals facing the camera (Vision Banana frame, z > 0)."""
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.3
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def normals_png(n_vb: np.ndarray, *, convention: str = "dsine", bits: int = 8,
                invalid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode Vision-Banana-frame normals as an RGB (n+1)/2 PNG array in `convention`.

    Returns (rgb uint8/uint16 (H, W, 3), the exact normals that array represents in the Vision
    Banana frame after quantization, unit length, 0 where `invalid`).
    """
    signs = {"dsine": (-1, 1, 1), "opencv": (1, -1, -1), "vision_banana": (1, 1, 1)}[convention]
    stored = n_vb * np.asarray(signs, np.float32)
    top = 255 if bits == 8 else 65535
    rgb = np.clip(np.round((stored + 1) / 2 * top), 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    # A quantized vector exactly 0 in all channels would read as invalid; keep it valid.
    rgb[(rgb == 0).all(axis=2)] = 1
    if invalid is not None:
        rgb[invalid] = 0
    back = (rgb.astype(np.float32) / top * 2 - 1) * np.asarray(signs, np.float32)
    norm = np.linalg.norm(back, axis=2, keepdims=True)
    expected = np.where(norm > 1e-6, back / np.maximum(norm, 1e-12), 0).astype(np.float32)
    if invalid is not None:
        expected[invalid] = 0
    return rgb, expected


# -------------------------------------------------------------------------------- Cityscapes

def write_cityscapes(root, *, split: str = "val", cities=("lindau", "munster"),
                     frames_per_city: int = 1, size=(32, 64), as_zip: bool = False,
                     seed: int = 0) -> list[dict]:
    """Cityscapes leftImg8bit + gtFine (labelIds, instanceIds, color) for a few frames.

    Layout: root/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png and
    root/gtFine/{split}/{city}/..._gtFine_{labelIds,instanceIds,color}.png; with `as_zip` the
    same members go into root/leftImg8bit_trainvaltest.zip and root/gtFine_trainvaltest.zip
    (with README and license.txt, as the official archives) and no tree is written.

    Returns per frame (sorted by path): {"stem", "image" uint8 RGB, "label_ids" uint8,
    "instance_ids" uint16} (instance pixels hold class*1000+k; one crowd "group" region holds
    the plain class id 26 = car).
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    frames, members = [], {"leftImg8bit": {}, "gtFine": {}}
    for city in cities:
        for f in range(frames_per_city):
            stem = f"{city}_{f:06d}_{19 + f:06d}"
            image = random_image(rng, h, w)
            blocks = rng.choice(_CS_STUFF_IDS, size=(h // 8, w // 8))
            label = np.kron(blocks, np.ones((8, 8), np.uint8)).astype(np.uint8)
            inst = label.astype(np.uint16)
            for k in range(3):
                cls = int(rng.choice(_CS_INSTANCE_IDS))
                y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 12))
                label[y0:y0 + 8, x0:x0 + 12] = cls
                inst[y0:y0 + 8, x0:x0 + 12] = cls * 1000 + k
            label[-4:, :6] = 26                       # a crowd of cars: group region, no instance
            inst[-4:, :6] = 26
            color = np.zeros((h, w, 3), np.uint8)
            rel = f"{split}/{city}/{stem}"
            members["leftImg8bit"][f"leftImg8bit/{rel}_leftImg8bit.png"] = png_bytes(image)
            members["gtFine"][f"gtFine/{rel}_gtFine_labelIds.png"] = png_bytes(label)
            members["gtFine"][f"gtFine/{rel}_gtFine_instanceIds.png"] = png_bytes(inst)
            members["gtFine"][f"gtFine/{rel}_gtFine_color.png"] = png_bytes(color)
            frames.append({"stem": stem, "city": city, "image": image, "label_ids": label,
                           "instance_ids": inst})
    for tree, files in members.items():
        if as_zip:
            archive = root / f"{tree}_trainvaltest.zip"
            archive.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("README", "The Cityscapes Dataset (test fixture)\n")
                z.writestr("license.txt", "fixture\n")
                for name, data in files.items():
                    z.writestr(name, data)
        else:
            for name, data in files.items():
                _write(root / name, data)
    return sorted(frames, key=lambda fr: (fr["city"], fr["stem"]))


# ------------------------------------------------------------------------------------ NYUv2

def write_nyuv2(root, *, n: int = 6, size=(12, 16), num_classes: int = 5,
                test_indices=(1, 3, 6), seed: int = 0, normals: bool = False) -> dict:
    """nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5) and splits.mat (MATLAB v5).

    The .mat stores arrays as MATLAB does, axes reversed: images (N, 3, W, H) uint8,
    depths/rawDepths (N, W, H) float32 metres (rawDepths has 0 holes), labels (N, W, H) uint16
    (0 = unlabeled), names (1, C) references to uint16 char columns, behind a 512-byte
    MATLAB userblock. splits.mat holds trainNdxs / testNdxs (1-based, column vectors).
    With `normals`, root/normals/{i:06d}_normal.png (DSINE convention, 8-bit) for every image.

    Returns {"mat", "splits", "normals_dir", "images" (N, H, W, 3), "depths" (N, H, W),
    "raw_depths", "labels" (N, H, W) uint16, "names", "test", "train", "normals" (N, H, W, 3)}.
    """
    import h5py
    import scipy.io

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed)
    h, w = size
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (n, h, w)).astype(np.float32)
    raw = depths.copy()
    raw[:, 0, :3] = 0.0
    labels = rng.integers(0, num_classes + 1, (n, h, w)).astype(np.uint16)
    names = [f"class{c}" for c in range(1, num_classes)] + ["wall"]
    mat = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w", userblock_size=512) as f:
        for key, arr, cls in (("images", images.transpose(0, 3, 2, 1), b"uint8"),
                              ("depths", depths.transpose(0, 2, 1), b"single"),
                              ("rawDepths", raw.transpose(0, 2, 1), b"single"),
                              ("labels", labels.transpose(0, 2, 1), b"uint16")):
            f.create_dataset(key, data=np.ascontiguousarray(arr)).attrs["MATLAB_class"] = cls
        refs = f.create_group("#refs#")
        ds = f.create_dataset("names", (1, len(names)), dtype=h5py.ref_dtype)
        for i, name in enumerate(names):
            chars = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], np.uint16))
            chars.attrs["MATLAB_class"] = b"char"
            ds[0, i] = chars.ref
        ds.attrs["MATLAB_class"] = b"cell"
    with open(mat, "r+b") as fh:           # the text MATLAB writes into the HDF5 userblock
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
                 b"HDF5 schema 1.00 .".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    test = [int(i) for i in test_indices]
    train = [i for i in range(1, n + 1) if i not in test]
    splits = root / "splits.mat"
    scipy.io.savemat(splits, {"testNdxs": np.array(test, np.float64).reshape(-1, 1),
                              "trainNdxs": np.array(train, np.float64).reshape(-1, 1)})
    out = {"mat": mat, "splits": splits, "images": images, "depths": depths, "raw_depths": raw,
           "labels": labels, "names": names, "test": test, "train": train, "normals_dir": None}
    if normals:
        ndir = root / "normals"
        expected = np.zeros((n, h, w, 3), np.float32)
        for i in range(n):
            invalid = np.zeros((h, w), bool)
            invalid[:2, :2] = True
            rgb, expected[i] = normals_png(_unit_normals(rng, h, w), convention="dsine",
                                           invalid=invalid)
            _write(ndir / f"{i:06d}_normal.png", png_bytes(rgb))
        out.update(normals_dir=ndir, normals=expected)
    return out


# ------------------------------------------------------------------------------------ KITTI

KITTI_FRAMES = (("2011_09_26", "2011_09_26_drive_0002_sync", 69, "train"),
                ("2011_09_26", "2011_09_26_drive_0002_sync", 54, "train"),
                ("2011_09_26", "2011_09_26_drive_0009_sync", 16, None),    # no annotated depth
                ("2011_09_30", "2011_09_30_drive_0016_sync", 5, "val"))


def write_kitti(root, *, frames=KITTI_FRAMES, size=(375, 1242), seed: int = 0) -> dict:
    """KITTI raw frames + data_depth_annotated + calib, and split files in 3 common layouts.

    Layout: root/raw/{date}/{drive}/image_02/data/{frame:010d}.png (8-bit RGB),
    root/raw/{date}/calib_cam_to_cam.txt (P_rect_02 with fx = 721.5377),
    root/data_depth_annotated/{train|val}/{drive}/proj_depth/groundtruth/image_02/{frame}.png
    (uint16, metres * 256, 0 = no return). `frames` entries with split None get no depth.

    Returns {"raw_root", "depth_root", "split_files": {"bts", "monodepth", "monodepth2"},
    "frames": [{"id", "image", "depth_raw" uint16 | None, "depth" float32 (NaN invalid)}]}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    raw_root, depth_root = root / "raw", root / "data_depth_annotated"
    out_frames, bts, mono, mono2 = [], [], [], []
    for date, drive, frame, split in frames:
        name = f"{frame:010d}"
        image = random_image(rng, h, w)
        img_rel = f"{date}/{drive}/image_02/data/{name}.png"
        _write(raw_root / img_rel, png_bytes(image))
        calib = raw_root / date / "calib_cam_to_cam.txt"
        if not calib.exists():
            calib.write_text("calib_time: 09-Jan-2012 13:57:47\n"
                             "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 "
                             "0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 "
                             "0.000000e+00 1.000000e+00 2.745884e-03\n")
        entry = {"id": f"{drive}/image_02/{name}", "image": image, "depth_raw": None, "depth": None}
        gt_rel = f"{drive}/proj_depth/groundtruth/image_02/{name}.png"
        if split is not None:
            raw = rng.integers(1, 80 * 256, (h, w)).astype(np.uint16)
            raw[rng.random((h, w)) < 0.7] = 0             # LiDAR is sparse
            _write(depth_root / split / gt_rel, png_bytes(raw))
            depth = raw.astype(np.float32) / 256.0
            depth[raw == 0] = np.nan
            entry.update(depth_raw=raw, depth=depth)
        out_frames.append(entry)
        bts.append(f"{img_rel} {gt_rel if split else 'None'} 721.5377")
        mono.append(f"{img_rel[:-4]}.jpg {date}/{drive}/image_03/data/{name}.jpg")
        mono2.append(f"{date}/{drive} {frame} l")
    files = {}
    for style, lines in (("bts", bts), ("monodepth", mono), ("monodepth2", mono2)):
        files[style] = _write(root / f"eigen_test_{style}.txt", ("\n".join(lines) + "\n").encode())
    return {"raw_root": raw_root, "depth_root": depth_root, "split_files": files,
            "frames": out_frames}


# ------------------------------------------------------------------------------------ DIODE

def write_diode(root, *, split: str = "val", per_domain: int = 2, size=(12, 16),
                normals_convention: str = "vision_banana", seed: int = 0) -> list[dict]:
    """DIODE {split}/{indoors|outdoor}/scene_*/scan_*/ with .png, _depth.npy (H, W, 1),
    _depth_mask.npy (H, W) float32 0/1 and _normal.npy (H, W, 3) float32 unit vectors, x right,
    y up, z toward the camera (`normals_convention` "opencv" writes x right, y down, z forward).

    Returns per image (sorted by path): {"rel" (stem relative to root), "domain", "image",
    "depth" (NaN outside the mask), "mask", "normals" (Vision Banana frame)}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    out = []
    for domain, scene in (("indoors", 19), ("outdoor", 22)):
        for k in range(per_domain):
            scan = 180 + k
            stem = (f"{split}/{domain}/scene_{scene:05d}/scan_{scan:05d}/"
                    f"{scene:05d}_{scan:05d}_{domain}_000_010")
            image = random_image(rng, h, w)
            depth = rng.uniform(0.7, 60.0, (h, w, 1)).astype(np.float32)
            mask = (rng.random((h, w)) > 0.2).astype(np.float32)
            n_vb = _unit_normals(rng, h, w)
            signs = (1, -1, -1) if normals_convention == "opencv" else (1, 1, 1)
            n_stored = n_vb * np.array(signs, np.float32)
            _write(root / f"{stem}.png", png_bytes(image))
            for suffix, arr in (("_depth.npy", depth), ("_depth_mask.npy", mask), ("_normal.npy", n_stored)):
                (root / f"{stem}{suffix}").parent.mkdir(parents=True, exist_ok=True)
                np.save(root / f"{stem}{suffix}", arr)
            expected = depth[..., 0].copy()
            expected[mask == 0] = np.nan
            out.append({"rel": stem, "domain": domain, "image": image, "depth": expected,
                        "mask": mask, "normals": n_vb})
    return sorted(out, key=lambda e: e["rel"])


# ------------------------------------------------------------------------------------ iBims-1

def write_ibims(root, *, names=("corridor_01", "office_03"), size=(12, 16), seed: int = 0) -> list[dict]:
    """ibims1_core_mat/: imagelist.txt and one MATLAB v5 {name}.mat per image with struct
    `data` {rgb, depth, edges, calib, mask_invalid (1 = valid), mask_transp (1 = opaque),
    mask_wall/table/floor[_paras]}.

    Returns per name: {"name", "image", "depth" (NaN where any mask or depth says invalid),
    "calib" (3x3)}.
    """
    import scipy.io

    folder = pathlib.Path(root) / "ibims1_core_mat"
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed)
    h, w = size
    out = []
    for name in names:
        rgb = random_image(rng, h, w)
        depth = rng.uniform(0.5, 20.0, (h, w)).astype(np.float32)
        depth[0, 0] = 0.0                                   # missing return
        mask_invalid = np.ones((h, w), np.uint8)
        mask_invalid[1, :4] = 0
        mask_transp = np.ones((h, w), np.uint8)
        mask_transp[2, 2:5] = 0
        calib = np.array([[559.6, 0, 325.3], [0, 558.7, 241.8], [0, 0, 1]], np.float64)
        data = {"rgb": rgb, "depth": depth, "edges": np.zeros((h, w), np.uint8), "calib": calib,
                "mask_invalid": mask_invalid, "mask_transp": mask_transp,
                "mask_wall": np.zeros((h, w), np.uint8), "mask_wall_paras": np.zeros((0, 4)),
                "mask_table": np.zeros((h, w), np.uint8), "mask_table_paras": np.zeros((0, 4)),
                "mask_floor": np.zeros((h, w), np.uint8), "mask_floor_paras": np.zeros((0, 4))}
        scipy.io.savemat(folder / f"{name}.mat", {"data": data})
        expected = depth.copy()
        expected[(depth == 0) | (mask_invalid == 0) | (mask_transp == 0)] = np.nan
        out.append({"name": name, "image": rgb, "depth": expected, "calib": calib})
    (folder / "imagelist.txt").write_text("\n".join(names) + "\n")
    return out


# ------------------------------------------------------------------------------------ ETH3D

def write_eth3d(root, *, scenes=("courtyard", "office"), per_scene: int = 1, size=(8, 12),
                seed: int = 0) -> list[dict]:
    """{scene}/images/dslr_images/DSC_{n:04d}.JPG (JPEG) and
    {scene}/ground_truth_depth/dslr_images/DSC_{n:04d}.JPG (headerless little-endian float32,
    row-major, inf = invalid). The real high-res set is 6048x4032; fixtures are tiny.

    Returns per image: {"id", "jpeg_bytes", "depth" (NaN where inf)}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    out = []
    n = 200
    for scene in scenes:
        for _ in range(per_scene):
            name = f"DSC_{n:04d}.JPG"
            n += 1
            data = jpeg_bytes(random_image(rng, h, w, smooth=True))
            _write(root / scene / "images" / "dslr_images" / name, data)
            depth = rng.uniform(0.5, 30.0, (h, w)).astype(np.float32)
            depth[0, :3] = np.inf
            _write(root / scene / "ground_truth_depth" / "dslr_images" / name,
                   depth.astype("<f4").tobytes())
            expected = depth.copy()
            expected[np.isinf(depth)] = np.nan
            out.append({"id": f"{scene}/{name[:-4]}", "jpeg_bytes": data, "depth": expected})
    return out


# ---------------------------------------------------------------------------------- ScanNet

def write_scannet(root, *, scenes=("scene0000_00", "scene0001_00"), per_scene: int = 2,
                  size=(12, 16), color_scale: int = 1, seed: int = 0) -> list[dict]:
    """{scene}/color/{n}.jpg (JPEG, `color_scale` x the depth size), {scene}/depth/{n}.png
    (uint16 millimetres, 0 = none), {scene}/intrinsic/intrinsic_depth.txt (4x4).

    Returns per frame: {"id", "jpeg_bytes", "depth_raw" uint16, "depth" (NaN where 0)}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    out = []
    for scene in scenes:
        k = np.eye(4)
        k[0, 0], k[1, 1], k[0, 2], k[1, 2] = 577.59, 578.73, 318.9, 242.68
        _write(root / scene / "intrinsic" / "intrinsic_depth.txt",
               "\n".join(" ".join(f"{v:.6f}" for v in row) for row in k).encode())
        for i in range(per_scene):
            data = jpeg_bytes(random_image(rng, h * color_scale, w * color_scale, smooth=True))
            _write(root / scene / "color" / f"{i}.jpg", data)
            raw = rng.integers(300, 9000, (h, w)).astype(np.uint16)
            raw[0, :2] = 0
            _write(root / scene / "depth" / f"{i}.png", png_bytes(raw))
            depth = raw.astype(np.float32) / 1000.0
            depth[raw == 0] = np.nan
            out.append({"id": f"{scene}/{i}", "jpeg_bytes": data, "depth_raw": raw, "depth": depth})
    return out


# ---------------------------------------------------------------------------------- VKITTI2

def write_vkitti2(root, *, scenes=("Scene01", "Scene02"), variation: str = "clone",
                  frames: int = 2, size=(10, 24), normals_root=None, seed: int = 0) -> list[dict]:
    """{scene}/{variation}/frames/rgb/Camera_0/rgb_{n:05d}.jpg, .../depth/Camera_0/depth_{n:05d}.png
    (uint16 centimetres, 65535 = sky) and {scene}/{variation}/intrinsic.txt. With
    `normals_root`: {normals_root}/{scene}/{variation}/frames/normal/Camera_0/normal_{n:05d}.png,
    16-bit RGB (n+1)/2 in the DSINE convention.

    Returns per frame: {"id", "jpeg_bytes", "depth_raw", "depth" (sky NaN), "sky" bool mask,
    "normals"?}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    out = []
    for scene in scenes:
        base = root / scene / variation
        lines = ["frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]"]
        for f in range(frames):
            for cam in (0, 1):
                lines.append(f"{f} {cam} 725.0087 725.0087 620.5 187")
        _write(base / "intrinsic.txt", ("\n".join(lines) + "\n").encode())
        for f in range(frames):
            data = jpeg_bytes(random_image(rng, h, w, smooth=True))
            _write(base / "frames" / "rgb" / "Camera_0" / f"rgb_{f:05d}.jpg", data)
            raw = rng.integers(100, 30000, (h, w)).astype(np.uint16)
            raw[:2, :] = 65535
            _write(base / "frames" / "depth" / "Camera_0" / f"depth_{f:05d}.png", png_bytes(raw))
            depth = raw.astype(np.float32) / 100.0
            sky = raw == 65535
            depth[sky] = np.nan
            entry = {"id": f"{scene}/{variation}/Camera_0/{f:05d}", "jpeg_bytes": data,
                     "depth_raw": raw, "depth": depth, "sky": sky}
            if normals_root is not None:
                invalid = sky.copy()
                rgb, expected = normals_png(_unit_normals(rng, h, w), bits=16, invalid=invalid)
                _write(pathlib.Path(normals_root) / scene / variation / "frames" / "normal" /
                       "Camera_0" / f"normal_{f:05d}.png", png_bytes(rgb))
                entry["normals"] = expected
            out.append(entry)
    return out


# -------------------------------------------------------------------------- DSINE normals

def write_dsine_normals(root, *, scene: str = "test", n: int = 3, size=(12, 16), bits: int = 8,
                        seed: int = 0) -> dict:
    """DSINE evaluation layout: {root}/{scene}/{i:06d}_img.png, _normal.png (RGB (n+1)/2,
    8- or 16-bit, all-zero = invalid), _intrins.npy (3x3); and {root}/split/test.txt.

    Returns {"split_file", "items": [{"id", "image", "normals" (Vision Banana frame),
    "intrins"}]}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    items, lines = [], []
    for i in range(n):
        stem = f"{scene}/{i:06d}"
        image = random_image(rng, h, w)
        invalid = np.zeros((h, w), bool)
        invalid[-1, :] = True
        rgb, expected = normals_png(_unit_normals(rng, h, w), bits=bits, invalid=invalid)
        k = np.array([[518.86, 0, 325.58], [0, 519.47, 253.74], [0, 0, 1]], np.float32)
        _write(root / f"{stem}_img.png", png_bytes(image))
        _write(root / f"{stem}_normal.png", png_bytes(rgb))
        np.save(root / f"{stem}_intrins.npy", k)
        lines.append(f"{stem}_img.png")
        items.append({"id": stem, "image": image, "normals": expected, "intrins": k})
    split = _write(root / "split" / "test.txt", ("\n".join(lines) + "\n").encode())
    return {"split_file": split, "items": items}


# -------------------------------------------------------------------------------------- COCO

def rle_counts_uncompressed(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE counts of a bool mask (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if not flat[0] else [0] + runs


def write_coco(root, *, size=(20, 24), seed: int = 0) -> dict:
    """annotations/instances_val2017.json + val2017/{id:012d}.jpg for 4 images.

    Image 1: two polygon instances (rectangles; polygon corners (x0, y0)..(x1, y1) cover rows
    y0..y1-1, cols x0..x1-1); image 2: one compressed-RLE instance and one iscrowd region in
    uncompressed RLE; image 3: no annotations; image 4: a polygon instance of category 3.
    Categories: 1 person, 2 bicycle, 3 dog.

    Returns {"annotation_file", "image_dir", "images": {id: {"jpeg_bytes", "masks" (N, H, W),
    "classes", "iscrowd", "ann_ids"}}} with instances in annotation-id order.
    """
    from pycocotools import mask as mask_utils

    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    cats = [{"id": 1, "name": "person", "supercategory": "person"},
            {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
            {"id": 3, "name": "dog", "supercategory": "animal"}]
    names = {c["id"]: c["name"] for c in cats}
    images, anns, expected = [], [], {}
    ann_id = 100

    def rect(y0, y1, x0, x1):
        m = np.zeros((h, w), bool)
        m[y0:y1, x0:x1] = True
        return m

    plan = {1: [("poly", 1, (2, 9, 3, 10), 0), ("poly", 2, (10, 18, 12, 22), 0)],
            2: [("rle", 1, (4, 15, 5, 11), 0), ("crowd", 1, (0, 6, 14, 24), 1)],
            3: [],
            4: [("poly", 3, (1, 19, 1, 5), 0)]}
    for image_id, items in plan.items():
        file_name = f"{image_id:012d}.jpg"
        data = jpeg_bytes(random_image(rng, h, w, smooth=True))
        _write(root / "val2017" / file_name, data)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        masks, classes, crowd, ids = [], [], [], []
        for kind, cat, (y0, y1, x0, x1), iscrowd in items:
            m = rect(y0, y1, x0, x1)
            if kind == "poly":
                seg = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            elif kind == "rle":
                enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                seg = {"size": [h, w], "counts": enc["counts"].decode("ascii")}
            else:
                seg = {"size": [h, w], "counts": rle_counts_uncompressed(m)}
            ann_id += 1
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cat,
                         "segmentation": seg, "area": float(m.sum()), "iscrowd": iscrowd,
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
            masks.append(m)
            classes.append(names[cat])
            crowd.append(bool(iscrowd))
            ids.append(ann_id)
        expected[image_id] = {"jpeg_bytes": data, "classes": classes, "iscrowd": crowd,
                              "ann_ids": ids,
                              "masks": np.array(masks, bool).reshape(len(masks), h, w)}
    ann_file = _write(root / "annotations" / "instances_val2017.json", json.dumps(
        {"info": {"description": "fixture"}, "licenses": [], "images": images,
         "annotations": anns, "categories": cats}).encode())
    return {"annotation_file": ann_file, "image_dir": root / "val2017", "images": expected}


# ---------------------------------------------------------------------------------- RefCOCOg

def write_refcoco(root, *, size=(16, 20), seed: int = 0) -> dict:
    """refcocog/refs(umd).p (pickle protocol 2, as the Python 2 original) + refcocog/instances.json
    and train2014/COCO_train2014_{id:012d}.jpg.

    Refs (ref_id: split, image, ann): 1: val, img 10, ann 501 (polygon); 2: val, img 10, ann 502
    (RLE); 3: train, img 11, ann 503; 4: test, img 11, ann 504; 5: val, img 11, ann 503.
    Each ref has 2 sentences.

    Returns {"refs_file", "instances_file", "image_dir", "refs": {ref_id: {"split", "image_id",
    "sents", "raws", "mask"}}, "jpeg_bytes": {image_id: bytes}}.
    """
    from pycocotools import mask as mask_utils

    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    boxes = {501: (2, 8, 3, 9), 502: (9, 15, 10, 19), 503: (1, 14, 1, 7), 504: (5, 12, 12, 18)}
    ann_image = {501: 10, 502: 10, 503: 11, 504: 11}
    anns, masks = [], {}
    for aid, (y0, y1, x0, x1) in boxes.items():
        m = np.zeros((h, w), bool)
        m[y0:y1, x0:x1] = True
        masks[aid] = m
        if aid == 502:
            enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            seg = {"size": [h, w], "counts": enc["counts"].decode("ascii")}
        else:
            seg = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        anns.append({"id": aid, "image_id": ann_image[aid], "category_id": 1 if aid != 504 else 18,
                     "segmentation": seg, "area": float(m.sum()), "iscrowd": 0,
                     "bbox": [x0, y0, x1 - x0, y1 - y0]})
    images, jpegs = [], {}
    for image_id in (10, 11):
        name = f"COCO_train2014_{image_id:012d}.jpg"
        jpegs[image_id] = jpeg_bytes(random_image(rng, h, w, smooth=True))
        _write(root / "train2014" / name, jpegs[image_id])
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    spec = {1: ("val", 501), 2: ("val", 502), 3: ("train", 503), 4: ("test", 504), 5: ("val", 503)}
    refs, expected = [], {}
    sent_id = 1000
    for ref_id, (split, aid) in spec.items():
        raws = [f"The Object number {ref_id}.", f"thing {ref_id} on the left"]
        sents = [r.lower().rstrip(".") for r in raws]
        sentences = []
        for raw, sent in zip(raws, sents, strict=True):
            sentences.append({"tokens": sent.split(), "raw": raw, "sent_id": sent_id, "sent": sent})
            sent_id += 1
        refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                     "file_name": f"COCO_train2014_{ann_image[aid]:012d}_{aid}.jpg",
                     "ann_id": aid, "ref_id": ref_id, "image_id": ann_image[aid], "split": split,
                     "sentences": sentences, "category_id": 1})
        expected[ref_id] = {"split": split, "image_id": ann_image[aid], "sents": sents,
                            "raws": raws, "mask": masks[aid]}
    folder = root / "refcocog"
    folder.mkdir(parents=True, exist_ok=True)
    refs_file = folder / "refs(umd).p"
    refs_file.write_bytes(pickle.dumps(refs, protocol=2))
    inst = _write(folder / "instances.json", json.dumps(
        {"images": images, "annotations": anns,
         "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                        {"id": 18, "name": "dog", "supercategory": "animal"}]}).encode())
    return {"refs_file": refs_file, "instances_file": inst, "image_dir": root / "train2014",
            "refs": expected, "jpeg_bytes": jpegs}


# -------------------------------------------------------------------------------- generation

def write_generation(root, *, n_t2i: int = 2, n_edit: int = 2, size=(8, 10), seed: int = 0) -> dict:
    """manifest.jsonl + PNG images: text-to-image lines ("image": null) then edit lines.

    Returns {"manifest", "entries": [{"prompt", "target", "image" (None for t2i), "id"}]}.
    """
    root = pathlib.Path(root)
    rng = _rng(seed)
    h, w = size
    lines, entries = [], []
    for i in range(n_t2i + n_edit):
        target = random_image(rng, h, w)
        _write(root / "targets" / f"{i:04d}.png", png_bytes(target))
        edit = i >= n_t2i
        image = random_image(rng, h, w) if edit else None
        if edit:
            _write(root / "inputs" / f"{i:04d}.png", png_bytes(image))
        prompt = f"an edit number {i}" if edit else f"a picture ünïcode {i}"
        lines.append(json.dumps({"prompt": prompt, "target": f"targets/{i:04d}.png",
                                 "image": f"inputs/{i:04d}.png" if edit else None,
                                 "source_url": f"http://example.com/{i}"}))
        entries.append({"prompt": prompt, "target": target, "image": image, "id": str(len(lines))})
    lines.insert(1, "")                                 # blank lines are allowed
    manifest = _write(root / "manifest.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    # ids are line numbers: the blank line shifts the entries after it.
    for k, e in enumerate(entries):
        e["id"] = str(k + 1 if k == 0 else k + 2)
    return {"manifest": manifest, "entries": entries}


# ------------------------------------------------------------------------------ comparisons

def assert_records_equal(a: dict, b: dict) -> None:
    """Exact equality of two records: same keys, arrays equal in dtype, shape and value (NaN
    equal NaN), referring entries equal, everything else ==."""
    assert set(a) == set(b), f"keys differ: {sorted(set(a) ^ set(b))}"
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, (
                f"{key}: {x.dtype}{x.shape} vs {getattr(y, 'dtype', type(y))}{getattr(y, 'shape', '')}")
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{key}: values differ"
        elif key == "referring":
            assert len(x) == len(y)
            for r, s in zip(x, y, strict=True):
                assert {k: v for k, v in r.items() if k != "mask"} == \
                       {k: v for k, v in s.items() if k != "mask"}
                assert np.array_equal(r["mask"], s["mask"]) and s["mask"].dtype == bool
        else:
            assert x == y, f"{key}: {x!r} != {y!r}"


def corrupt_file(path) -> None:
    """Keep the first 40 bytes of a file: a truncated PNG/JPEG/npy that decoders reject."""
    path = pathlib.Path(path)
    path.write_bytes(path.read_bytes()[:40])


def assert_pickle_round_trip(source, index: int = 0) -> None:
    """A pickled copy of `source` (what a grain worker receives) reads record `index` identically."""
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == len(source) and copy.name == source.name
    assert_records_equal(source[index], copy[index])
