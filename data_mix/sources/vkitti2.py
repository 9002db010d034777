"""Virtual KITTI 2: rendered driving scenes with exact depth (and normals when provided).

On-disk format (vkitti 2.0.3 archives, extracted into one root):

    {scene}/{variation}/frames/rgb/Camera_{c}/rgb_{n:05d}.jpg       8-bit RGB, 1242x375
    {scene}/{variation}/frames/depth/Camera_{c}/depth_{n:05d}.png   uint16 centimetres
    {scene}/{variation}/intrinsic.txt      "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]" per frame

Depth scale: value / 100 metres. The renderer clips at 655.35 m (65535): that code means sky;
it becomes NaN (invalid) by default, or +inf with `sky_as_inf=True` (the depth codec paints
inf white, as Vision Banana paints sky).

Normals are not part of the release. `normals_root` reads normal maps derived from the depth
(e.g. DSINE's plane-fitted ones) stored in a tree mirroring the depth tree:
`{scene}/{variation}/frames/normal/Camera_{c}/normal_{n:05d}.png`, RGB (n+1)/2 at 8 or 16 bits,
all-zero = invalid, in `normals_convention` (default "dsine", see normal_frames.py).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources import normal_frames
from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.images import decode_color_any_depth, decode_png16, decode_rgb
from data_mix.sources.storage import DirStore

DEPTH_SCALE = 100.0           # uint16 value per metre (centimetres)
SKY_CODE = 65535              # 655.35 m: the renderer's far clip, i.e. sky


def read_intrinsics(path: pathlib.Path) -> dict[tuple[int, int], dict]:
    """{(frame, camera): {fx, fy, cx, cy}} from a VKITTI2 intrinsic.txt."""
    table = {}
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines[1:], 2):              # first line is the header
        tokens = line.split()
        if not tokens:
            continue
        try:
            frame, cam, fx, fy, cx, cy = (float(t) for t in tokens[:6])
        except ValueError:
            raise RecordError(f"{path}:{n}: expected 'frame cameraID fx fy cx cy', got {line!r}") from None
        table[(int(frame), int(cam))] = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
    return table


class VKITTI2Source(Source):
    """Virtual KITTI 2 frames with depth.

    Args:
      root: folder holding Scene01/, Scene02/, ...
      scenes: scene folder names (default: all found).
      variations: e.g. ("clone",), ("fog", "rain"); default ("clone",).
      cameras: ("Camera_0",) (left), ("Camera_1",) (right), or both.
      sky_as_inf: sky (65535) -> +inf instead of NaN.
      normals_root, normals_convention: optional normals, see module docstring.
      skip_bad: see `Source`.

    Record: image uint8 (375, 1242, 3); depth float32 metres; normals if normals_root;
    meta {dataset, id (scene/variation/camera/frame), image_path, depth_path, intrinsics?}.
    """

    def __init__(self, root: str | os.PathLike, *, scenes=None, variations=("clone",),
                 cameras=("Camera_0",), sky_as_inf: bool = False,
                 normals_root: str | os.PathLike | None = None, normals_convention: str = "dsine",
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.sky_as_inf = sky_as_inf
        self.normals = DirStore(normals_root) if normals_root is not None else None
        self.normals_convention = normal_frames.check_convention(normals_convention)
        if scenes is None:
            scenes = sorted(p.name for p in self.store.root.iterdir() if p.is_dir())
        self.items = []                                    # (scene, variation, camera, frame)
        for scene in scenes:
            for var in variations:
                for cam in cameras:
                    for rel in self.store.list(f"{scene}/{var}/frames/rgb/{cam}", ".jpg"):
                        frame = int(pathlib.PurePosixPath(rel).stem.split("_")[-1])
                        self.items.append((scene, var, cam, frame))
        if not self.items:
            raise FileNotFoundError(f"VKITTI2: no frames/rgb/*.jpg for scenes {scenes}, variations "
                                    f"{variations}, cameras {cameras} under {self.store.root}")
        self.name = "vkitti2/" + "+".join(variations)
        self._intrinsics: dict[tuple[str, str], dict | None] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _camera_intrinsics(self, scene: str, var: str, cam: str, frame: int) -> dict | None:
        if (scene, var) not in self._intrinsics:
            path = self.store.path(f"{scene}/{var}/intrinsic.txt")
            self._intrinsics[(scene, var)] = read_intrinsics(path) if path.is_file() else None
        table = self._intrinsics[(scene, var)]
        return None if table is None else table.get((frame, int(cam.split("_")[-1])))

    def _load(self, i: int) -> dict:
        scene, var, cam, frame = self.items[i]
        base = f"{scene}/{var}/frames"
        rgb_rel = f"{base}/rgb/{cam}/rgb_{frame:05d}.jpg"
        depth_rel = f"{base}/depth/{cam}/depth_{frame:05d}.png"
        image = decode_rgb(self.store.read(rgb_rel), self.store.describe(rgb_rel))
        what = self.store.describe(depth_rel)
        raw = decode_png16(self.store.read(depth_rel), what)
        if raw.shape != image.shape[:2]:
            raise RecordError(f"{what}: depth {raw.shape} does not match image {image.shape[:2]}")
        depth = clean_depth(raw.astype(np.float32) / DEPTH_SCALE, what=what)
        depth[raw == SKY_CODE] = np.inf if self.sky_as_inf else np.nan
        meta = {"dataset": "vkitti2", "id": f"{scene}/{var}/{cam}/{frame:05d}",
                "image_path": self.store.describe(rgb_rel), "depth_path": what}
        intr = self._camera_intrinsics(scene, var, cam, frame)
        if intr is not None:
            meta["intrinsics"] = intr
        record = {"image": image, "depth": depth, "meta": meta}
        if self.normals is not None:
            nrel = f"{base}/normal/{cam}/normal_{frame:05d}.png"
            nwhat = self.normals.describe(nrel)
            normals = normal_frames.from_rgb(decode_color_any_depth(self.normals.read(nrel), nwhat),
                                             self.normals_convention, what=nwhat)
            if normals.shape[:2] != image.shape[:2]:
                raise RecordError(f"{nwhat}: normals {normals.shape[:2]} do not match image "
                                  f"{image.shape[:2]}")
            record["normals"] = normals
            meta["normals_path"] = nwhat
        return record
