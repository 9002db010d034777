"""Surface-normal benchmarks in the DSINE evaluation layout (NYUv2, ScanNet, iBims, Sintel, VKITTI).

DSINE (Bae & Davison, CVPR 2024) distributes the normal ground truth its peers (Lotus, Marigold,
StableNormal) evaluate on, one folder per dataset:

    {root}/{scene}/{id}_img.png | .jpg     8-bit RGB
    {root}/{scene}/{id}_normal.png         RGB (n + 1)/2: 8-bit (NYUv2, ScanNet, iBims, Sintel)
                                           or 16-bit (VKITTI); all-zero pixel = no ground truth
    {root}/{scene}/{id}_intrins.npy        3x3 camera matrix (pixels)

with split files listing "{scene}/{id}_img.png" per line (`split/test.txt`). Normals are in
the "dsine" convention (x left, y up, z toward the camera; see normal_frames.py) and come out
in the Vision Banana frame.
"""

from __future__ import annotations

import os
import pathlib

from data_mix.sources import normal_frames
from data_mix.sources.base import RecordError, Source
from data_mix.sources.images import decode_color_any_depth, decode_rgb, load_npy
from data_mix.sources.storage import DirStore


class DSINENormalsSource(Source):
    """Image + ground-truth normals (+ intrinsics) in DSINE's evaluation layout.

    Args:
      root: the dataset folder (e.g. dsine_eval/nyuv2).
      split_file: optional list of "{scene}/{id}_img.ext" paths relative to root; default:
        every *_img.png / *_img.jpg under root, sorted.
      dataset: name recorded in meta (default: root's folder name).
      normals_convention: stored axes (default "dsine").
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); normals float32 (H, W, 3) Vision Banana frame (0 = invalid);
    meta {dataset, id, image_path, normals_path, intrinsics?}.
    """

    def __init__(self, root: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                 dataset: str | None = None, normals_convention: str = "dsine",
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.convention = normal_frames.check_convention(normals_convention)
        if split_file is not None:
            images = [s.split()[0] for s in pathlib.Path(split_file).read_text().splitlines()
                      if s.strip()]
        else:
            images = sorted(self.store.list("", "_img.png") + self.store.list("", "_img.jpg"))
        bad = [p for p in images if "_img." not in p]
        if bad:
            raise ValueError(f"DSINE layout: {bad[0]!r} in {split_file} is not a '*_img.*' path")
        if not images:
            raise FileNotFoundError(f"DSINE layout: no *_img.png / *_img.jpg under {self.store.root}")
        self.images = images
        self.dataset = dataset or self.store.root.name
        self.name = f"dsine/{self.dataset}"

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, i: int) -> dict:
        image_rel = self.images[i]
        stem = image_rel.rsplit("_img.", 1)[0]
        image = decode_rgb(self.store.read(image_rel), self.store.describe(image_rel))
        nrel = stem + "_normal.png"
        nwhat = self.store.describe(nrel)
        normals = normal_frames.from_rgb(decode_color_any_depth(self.store.read(nrel), nwhat),
                                         self.convention, what=nwhat)
        if normals.shape[:2] != image.shape[:2]:
            raise RecordError(f"{nwhat}: normals {normals.shape[:2]} do not match image {image.shape[:2]}")
        meta = {"dataset": self.dataset, "id": stem, "image_path": self.store.describe(image_rel),
                "normals_path": nwhat}
        krel = stem + "_intrins.npy"
        if self.store.exists(krel):
            k = load_npy(self.store.read(krel), self.store.describe(krel))
            if k.shape != (3, 3):
                raise RecordError(f"{self.store.describe(krel)}: expected a 3x3 matrix, got {k.shape}")
            meta["intrinsics"] = {"fx": float(k[0, 0]), "fy": float(k[1, 1]),
                                  "cx": float(k[0, 2]), "cy": float(k[1, 2])}
        return {"image": image, "normals": normals, "meta": meta}
