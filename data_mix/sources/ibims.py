"""iBims-1 (independent Benchmark images and matched scans): indoor laser-scan depth.

On-disk format (Koch et al., ECCV-W 2018; `ibims1_core_mat.zip`): a folder with
`imagelist.txt` (one image name per line) and one MATLAB v5 file `{name}.mat` per image holding
a struct `data` with fields

    rgb            uint8 480x640x3
    depth          single 480x640, metres, 0 = missing
    mask_invalid   480x640, 1 = VALID (0 marks invalid pixels, despite the name)
    mask_transp    480x640, 1 = opaque (0 marks transparent surfaces)
    calib          3x3 camera matrix K (pixels)
    edges, mask_{wall,table,floor}[_paras]   geometric-error annotations

read as `scipy.io.loadmat(path)["data"]["depth"][0][0]`, exactly as the official
`evaluate_ibims.py`, whose valid mask is mask_transp * mask_invalid * (depth != 0). Records set
every pixel outside that mask to NaN. Depth scale: metres.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.storage import DirStore

HEIGHT, WIDTH = 480, 640


def _field(data, key: str, what: str) -> np.ndarray:
    try:
        return np.asarray(data[key][0][0])
    except (ValueError, KeyError, IndexError):
        names = data.dtype.names or ()
        raise RecordError(f"{what}: struct 'data' has no field {key!r} (has {list(names)})") from None


class IBimsSource(Source):
    """iBims-1 core images as records.

    Args:
      root: the `ibims1_core_mat` folder (holds imagelist.txt and the .mat files).
      skip_bad: see `Source`.

    Record: image uint8 (480, 640, 3); depth float32 metres (NaN invalid / transparent /
    missing); meta {dataset, id, mat_path, intrinsics}.
    """

    def __init__(self, root: str | os.PathLike, *, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        listing = self.store.path("imagelist.txt")
        if not listing.is_file():
            raise FileNotFoundError(f"iBims-1: {listing} not found")
        self.names = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        self.name = "ibims1"

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, i: int) -> dict:
        import scipy.io

        name = self.names[i]
        rel = name if name.endswith(".mat") else name + ".mat"
        what = self.store.describe(rel)
        if not self.store.exists(rel):
            raise RecordError(f"missing file {what}")
        try:
            mat = scipy.io.loadmat(self.store.path(rel))
        except (ValueError, TypeError, OSError, NotImplementedError) as e:
            raise RecordError(f"{what}: not a readable MATLAB v5 file: {e}") from None
        if "data" not in mat:
            names = sorted(k for k in mat if not k.startswith("__"))
            raise RecordError(f"{what}: no struct 'data' (has {names})")
        data = mat["data"]
        rgb = _field(data, "rgb", what)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise RecordError(f"{what}: data.rgb is {rgb.dtype} {rgb.shape}; expected uint8 (H, W, 3)")
        depth = clean_depth(_field(data, "depth", what), what=what)
        valid = (_field(data, "mask_invalid", what) != 0) & (_field(data, "mask_transp", what) != 0)
        if valid.shape != depth.shape or depth.shape != rgb.shape[:2]:
            raise RecordError(f"{what}: rgb {rgb.shape[:2]}, depth {depth.shape}, masks "
                              f"{valid.shape} differ")
        depth[~valid] = np.nan
        meta = {"dataset": "ibims1", "id": pathlib.PurePosixPath(rel).stem, "mat_path": what}
        calib = _field(data, "calib", what)
        if calib.shape == (3, 3):
            meta["intrinsics"] = {"fx": float(calib[0, 0]), "fy": float(calib[1, 1]),
                                  "cx": float(calib[0, 2]), "cy": float(calib[1, 2])}
        return {"image": np.ascontiguousarray(rgb), "depth": depth, "meta": meta}
