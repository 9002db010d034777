"""ETH3D high-resolution multi-view (DSLR) images with laser-scan ground-truth depth.

On-disk format (eth3d.net/documentation, "multi-view data", per scene archives):

    {scene}/images/dslr_images/DSC_{n}.JPG              8-bit RGB JPEG, 6048x4032
    {scene}/ground_truth_depth/dslr_images/DSC_{n}.JPG  NOT a JPEG: raw little-endian float32,
                                                        row-major, H*W values, metres, inf = invalid

(the depth archive `{scene}_dslr_depth.7z` reuses the image file names). The raw depth file
carries no header, so its size must be exactly height*width*4 bytes of the paired image
(4032*6048*4 = 97,542,144 for the high-res set); anything else is a bad record. Depth scale:
metres; inf (no laser return) and <= 0 become NaN.

Either `root` holds the scene folders (images and depth extracted side by side), or
`file_list` lists "rgb_path depth_path" pairs relative to `root` (Marigold's
`eth3d_filename_list.txt`: rgb/{scene}/images/... depth/{scene}_dslr_depth/{scene}/ground_truth_depth/...).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.images import decode_rgb
from data_mix.sources.storage import DirStore

HEIGHT, WIDTH = 4032, 6048


def decode_raw_depth(data: bytes, height: int, width: int, *, what: str) -> np.ndarray:
    """float32 (height, width) from ETH3D's headerless float32 depth; raises on a size mismatch."""
    expected = height * width * 4
    if len(data) != expected:
        raise RecordError(f"{what}: {len(data)} bytes; expected {expected} "
                          f"({height}x{width} float32) to match its image")
    return np.frombuffer(data, dtype="<f4").reshape(height, width)


class ETH3DSource(Source):
    """ETH3D DSLR images with ground-truth depth.

    Args:
      root: folder of scene folders, or the root the `file_list` paths are relative to.
      file_list: optional "rgb depth" pairs per line.
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); depth float32 (H, W) metres (NaN invalid);
    meta {dataset, id (scene/DSC_n), scene, image_path, depth_path}.
    """

    def __init__(self, root: str | os.PathLike, *, file_list: str | os.PathLike | None = None,
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        if file_list is not None:
            pairs = []
            for n, line in enumerate(pathlib.Path(file_list).read_text().splitlines(), 1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(tokens) < 2:
                    raise ValueError(f"{file_list}:{n}: expected 'rgb_path depth_path', got {line!r}")
                pairs.append((tokens[0], tokens[1]))
        else:
            pairs = []
            for scene in sorted(p.name for p in self.store.root.iterdir() if p.is_dir()):
                for rel in self.store.list(f"{scene}/images/dslr_images", ""):
                    name = pathlib.PurePosixPath(rel).name
                    pairs.append((rel, f"{scene}/ground_truth_depth/dslr_images/{name}"))
        if not pairs:
            raise FileNotFoundError(f"ETH3D: no images under {self.store.root} "
                                    "({scene}/images/dslr_images/*)")
        self.pairs = pairs
        self.name = "eth3d"

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> dict:
        image_rel, depth_rel = self.pairs[i]
        image = decode_rgb(self.store.read(image_rel), self.store.describe(image_rel))
        h, w = image.shape[:2]
        what = self.store.describe(depth_rel)
        depth = clean_depth(decode_raw_depth(self.store.read(depth_rel), h, w, what=what), what=what)
        parts = pathlib.PurePosixPath(image_rel).parts
        scene = parts[-4] if len(parts) >= 4 else ""
        return {"image": image, "depth": depth,
                "meta": {"dataset": "eth3d", "id": f"{scene}/{pathlib.PurePosixPath(image_rel).stem}",
                         "scene": scene, "image_path": self.store.describe(image_rel),
                         "depth_path": what}}
