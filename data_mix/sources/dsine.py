"""Surface-normal benchmarks in the DSINE evaluation layout (NYUv2, ScanNet, iBims, Sintel, VKITTI).

DSINE (Bae & Davison, CVPR 2024) distributes the normal ground truth its peers (Lotus, Marigold,
StableNormal) evaluate on, one folder per dataset (`dsine_eval/{dataset}`):

    {root}/{scene}/{id}_img.png | .jpg     8-bit RGB
    {root}/{scene}/{id}_normal.png         RGB (n + 1)/2: 8-bit (NYUv2, ScanNet) or 16-bit
                                           (VKITTI); all-zero pixel = no ground truth
    {root}/{scene}/{id}_normal.exr         float32 RGB = (x, y, z) unit vectors (iBims, Sintel,
                                           normals fitted to depth); valid where |n| > 0.5
    {root}/{scene}/{id}_intrins.npy        3x3 camera matrix (pixels)

with split files listing "{scene}/{id}_img.png" per line (`split/test.txt`; iBims'
`ibims/corridor_01_img.png`, Sintel's `alley_1/frame_0001_img.png`). Which normal file a
dataset has follows DSINE's per-dataset readers (`data/datasets/{nyuv2,scannet,vkitti}` open
`_normal.png`, `{ibims,sintel}` open `_normal.exr`, read with OpenCV, BGR -> RGB, and mask
`norm > 0.5`); this reader takes whichever exists, in that order: .exr, .png, .npy.

Marigold's copies of these benchmarks (`data_split/{ibims,nyu,scannet,sintel}_normals/*.txt`)
use the same stems with `{id}_normal.npy`, float (H, W, 3), zero vector = invalid, in
Marigold's own frame (x right, y up, z toward the viewer, "vision_banana" here), and list
"img_path normal_path" pairs; a two-column split file is read that way. (Marigold's Sintel
reader also crops 221 columns off each side and scores its invalid pixels as camera-facing;
this reader keeps DSINE's full frame and mask.)

Axes: DSINE's files are in the "dsine" convention (x left, y up, z toward the camera; see
normal_frames.py), Marigold's .npy in "vision_banana"; records come out in the Vision Banana
frame. `normals_convention` overrides the per-format default.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources import normal_frames
from data_mix.sources.base import RecordError, Source
from data_mix.sources.images import decode_color_any_depth, decode_exr_rgb, decode_rgb, load_npy
from data_mix.sources.storage import DirStore

#: Normal-file suffixes tried in order, with the axes each format is stored in.
NORMAL_FORMATS = (("_normal.exr", "dsine"), ("_normal.png", "dsine"), ("_normal.npy", "vision_banana"))
#: DSINE's validity test for float (.exr) normals: the stored vector's norm.
EXR_MIN_NORM = 0.5


def read_normals(data: bytes, suffix: str, convention: str, *, what: str) -> np.ndarray:
    """float32 (H, W, 3) Vision Banana normals (0-vector invalid) from one DSINE/Marigold file."""
    if suffix.endswith(".exr"):
        n = decode_exr_rgb(data, what)
        valid = np.linalg.norm(n, axis=2) > EXR_MIN_NORM
        return normal_frames.to_vision_banana(n, convention, what=what, valid=valid)
    if suffix.endswith(".png"):
        return normal_frames.from_rgb(decode_color_any_depth(data, what), convention, what=what)
    return normal_frames.to_vision_banana(load_npy(data, what), convention, what=what)


class DSINENormalsSource(Source):
    """Image + ground-truth normals (+ intrinsics) in DSINE's (or Marigold's) evaluation layout.

    Args:
      root: the dataset folder (e.g. dsine_eval/ibims).
      split_file: optional list of "{scene}/{id}_img.ext" paths relative to root (DSINE), or of
        "img_path normal_path" pairs (Marigold); default: every *_img.png / *_img.jpg under
        root, sorted.
      dataset: name recorded in meta (default: root's folder name).
      normals_convention: stored axes; None: "dsine" for .exr / .png, "vision_banana" for .npy.
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); normals float32 (H, W, 3) Vision Banana frame (0 = invalid);
    meta {dataset, id, image_path, normals_path, normals_format, intrinsics?}.
    """

    def __init__(self, root: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                 dataset: str | None = None, normals_convention: str | None = None,
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.convention = (normal_frames.check_convention(normals_convention)
                           if normals_convention is not None else None)
        pairs = []
        if split_file is not None:
            for line in pathlib.Path(split_file).read_text().splitlines():
                tokens = line.split()
                if tokens:
                    pairs.append((tokens[0], tokens[1] if len(tokens) > 1 else None))
        else:
            images = sorted(self.store.list("", "_img.png") + self.store.list("", "_img.jpg"))
            pairs = [(p, None) for p in images]
        bad = [p for p, _ in pairs if "_img." not in p]
        if bad:
            raise ValueError(f"DSINE layout: {bad[0]!r} in {split_file} is not a '*_img.*' path")
        if not pairs:
            raise FileNotFoundError(f"DSINE layout: no *_img.png / *_img.jpg under {self.store.root}")
        self.images = [p for p, _ in pairs]
        self.normal_files = [n for _, n in pairs]
        self.dataset = dataset or self.store.root.name
        self.name = f"dsine/{self.dataset}"

    def __len__(self) -> int:
        return len(self.images)

    def _normals_file(self, i: int, stem: str) -> tuple[str, str]:
        """(relative path, format suffix) of record i's normal map."""
        listed = self.normal_files[i]
        if listed is not None:
            suffix = next((s for s, _ in NORMAL_FORMATS if listed.endswith(s[len("_normal"):])), None)
            if suffix is None:
                raise RecordError(f"{self.store.describe(listed)}: expected a .exr, .png or .npy normal map")
            return listed, suffix
        for suffix, _ in NORMAL_FORMATS:
            if self.store.exists(stem + suffix):
                return stem + suffix, suffix
        tried = ", ".join(stem + s for s, _ in NORMAL_FORMATS)
        raise RecordError(f"missing normals under {self.store.root}: none of {tried}")

    def _load(self, i: int) -> dict:
        image_rel = self.images[i]
        stem = image_rel.rsplit("_img.", 1)[0]
        image = decode_rgb(self.store.read(image_rel), self.store.describe(image_rel))
        nrel, suffix = self._normals_file(i, stem)
        nwhat = self.store.describe(nrel)
        convention = self.convention or dict(NORMAL_FORMATS)[suffix]
        normals = read_normals(self.store.read(nrel), suffix, convention, what=nwhat)
        if normals.shape[:2] != image.shape[:2]:
            raise RecordError(f"{nwhat}: normals {normals.shape[:2]} do not match image {image.shape[:2]}")
        meta = {"dataset": self.dataset, "id": stem, "image_path": self.store.describe(image_rel),
                "normals_path": nwhat, "normals_format": suffix.rsplit(".", 1)[1]}
        krel = stem + "_intrins.npy"
        if self.store.exists(krel):
            k = load_npy(self.store.read(krel), self.store.describe(krel))
            if k.shape != (3, 3):
                raise RecordError(f"{self.store.describe(krel)}: expected a 3x3 matrix, got {k.shape}")
            meta["intrinsics"] = {"fx": float(k[0, 0]), "fy": float(k[1, 1]),
                                  "cx": float(k[0, 2]), "cy": float(k[1, 2])}
        return {"image": image, "normals": normals, "meta": meta}
