"""ScanNet (v2) RGB-D frames as exported by its SensReader.

On-disk format, per scene:

    {scene}/color/{frame}.jpg                 8-bit RGB JPEG (1296x968 in raw exports)
    {scene}/depth/{frame}.png                 uint16 millimetres, 0 = no measurement (640x480)
    {scene}/intrinsic/intrinsic_depth.txt     4x4 matrix, K in the top-left 3x3 (optional)

Depth scale: value / 1000 metres; 0 -> NaN. Frames are paired by name (`0.jpg`/`0.png` from
SensReader, `000000.jpg`/`000000.png` in the Marigold evaluation copy). Colour and depth are
registered but at different resolutions in raw exports: with `resize_image_to_depth` (default)
the colour image is resized (area averaging) to the depth map's size, the convention of the
depth benchmarks, and `meta["image_size_original"]` keeps its original size; the intrinsics
given are the depth camera's (they describe the record's pixels).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.images import decode_png16, decode_rgb, resize_rgb
from data_mix.sources.storage import DirStore

DEPTH_SCALE = 1000.0          # uint16 value per metre (millimetres)


def _frame_key(name: str):
    stem = pathlib.PurePosixPath(name).stem
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


class ScanNetSource(Source):
    """ScanNet frames with depth.

    Args:
      root: folder of scene folders (scene0000_00, ...).
      file_list: optional "color_path depth_path" pairs per line, relative to root.
      resize_image_to_depth: resize colour to the depth resolution when they differ.
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); depth float32 (H, W) metres (NaN invalid);
    meta {dataset, id (scene/frame), scene, image_path, depth_path, intrinsics?}.
    """

    def __init__(self, root: str | os.PathLike, *, file_list: str | os.PathLike | None = None,
                 resize_image_to_depth: bool = True, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.resize_image_to_depth = resize_image_to_depth
        if file_list is not None:
            pairs = []
            for n, line in enumerate(pathlib.Path(file_list).read_text().splitlines(), 1):
                tokens = line.split()
                if tokens and len(tokens) < 2:
                    raise ValueError(f"{file_list}:{n}: expected 'color_path depth_path', got {line!r}")
                if tokens:
                    pairs.append((tokens[0], tokens[1]))
        else:
            pairs = []
            for scene in sorted(p.name for p in self.store.root.iterdir() if p.is_dir()):
                for rel in sorted(self.store.list(f"{scene}/color", ".jpg"), key=_frame_key):
                    stem = pathlib.PurePosixPath(rel).stem
                    pairs.append((rel, f"{scene}/depth/{stem}.png"))
        if not pairs:
            raise FileNotFoundError(f"ScanNet: no {{scene}}/color/*.jpg under {self.store.root}")
        self.pairs = pairs
        self.name = "scannet"
        self._intrinsics: dict[str, dict | None] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _scene_intrinsics(self, scene: str) -> dict | None:
        if scene not in self._intrinsics:
            path = self.store.path(f"{scene}/intrinsic/intrinsic_depth.txt")
            k = None
            if path.is_file():
                try:
                    m = np.loadtxt(path).reshape(4, 4)
                    k = {"fx": float(m[0, 0]), "fy": float(m[1, 1]),
                         "cx": float(m[0, 2]), "cy": float(m[1, 2])}
                except ValueError as e:
                    raise RecordError(f"{path}: expected a 4x4 matrix: {e}") from None
            self._intrinsics[scene] = k
        return self._intrinsics[scene]

    def _load(self, i: int) -> dict:
        color_rel, depth_rel = self.pairs[i]
        image = decode_rgb(self.store.read(color_rel), self.store.describe(color_rel))
        what = self.store.describe(depth_rel)
        depth = clean_depth(decode_png16(self.store.read(depth_rel), what).astype(np.float32)
                            / DEPTH_SCALE, what=what)
        scene = pathlib.PurePosixPath(color_rel).parts[0]
        meta = {"dataset": "scannet",
                "id": f"{scene}/{pathlib.PurePosixPath(color_rel).stem}", "scene": scene,
                "image_path": self.store.describe(color_rel), "depth_path": what}
        if image.shape[:2] != depth.shape:
            if not self.resize_image_to_depth:
                raise RecordError(f"{meta['image_path']}: image {image.shape[:2]} and depth "
                                  f"{depth.shape} differ (resize_image_to_depth=False)")
            meta["image_size_original"] = list(image.shape[:2])
            image = resize_rgb(image, *depth.shape)
        intr = self._scene_intrinsics(scene)
        if intr is not None:
            meta["intrinsics"] = intr
        return {"image": image, "depth": depth, "meta": meta}
