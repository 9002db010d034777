"""DIODE (Dense Indoor/Outdoor DEpth): laser-scanned metric depth, validity masks, normals.

On-disk format (diode-dataset.org, diode-devkit), per image:

    {root}/{split}/{indoors|outdoor}/scene_{s}/scan_{t}/{s}_{t}_{domain}_{a}_{b}.png   8-bit RGB 1024x768
    ... same stem + "_depth.npy"        float32 (H, W, 1) metres
    ... same stem + "_depth_mask.npy"   float32 (H, W), 1 = valid laser return, 0 = none
    ... same stem + "_normal.npy"       float32 (H, W, 3) (the separate "DIODE Normal" archive)

Depth scale: metres; pixels with mask 0 (or depth <= 0) are NaN in records; evaluation
additionally caps to 0.6..350 m (Marigold protocol). The mask's path is in `meta`.

Normals: unit vectors in the camera frame, stored in `normals_convention`. Their axes could
NOT be established from DIODE's own material. The devkit (diode-dataset/diode-devkit, checked
at commit 8b1765b) says only "Surface normal vector ground truth with the same resolution as
the images. Invalid normals are represented as (0,0,0)" (README.md); its code reads no normals
(`diode.py`'s DIODE dataset returns image, depth, mask), `plot_normal_map` only shifts the map
by its minimum and halves it for display, and demo.ipynb plots depth only; intrinsics.txt
gives fx, fy, cx, cy and no axes. The default, "vision_banana" (x right, y up, z toward the
camera), rests on indirect evidence: Marigold's normals benchmark (`script/normals/eval.py`
with `src/dataset/diode_dataset.py`) compares the `*_normal.npy` of `diode/val` with its
predictions without any flip, and diffusers documents those predictions as x right, y up,
z facing the observer. If that is wrong, every DIODE normals number is off by a sign flip;
the reader's `notes` (printed in eval reports) say so. Check a real file before reporting:
a camera-facing wall must come out with z > 0 (an OpenCV-frame file would give z < 0; pass
normals_convention="opencv" then).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources import normal_frames
from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.images import decode_rgb, load_npy
from data_mix.sources.storage import DirStore

DOMAINS = ("indoors", "outdoor")


class DIODESource(Source):
    """DIODE images with depth (and optionally normals).

    Args:
      root: folder holding `val/` (and/or `train/`).
      split: "val" (the benchmark split) or "train".
      domain: "indoors", "outdoor" or "all".
      file_list: optional text file whose lines start with image paths relative to `root`
        (Marigold's `diode_val_*_filename_list.txt`); default: every image under split/domain.
      with_normals: read `*_normal.npy` (missing file = bad record).
      normals_convention: axes of the stored normals (see module docstring).
      skip_bad: see `Source`.

    Record: image uint8 (768, 1024, 3); depth float32 metres (NaN invalid); normals;
    meta {dataset, id, domain, image_path, depth_path, depth_mask_path, normals_path}.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val", *, domain: str = "indoors",
                 file_list: str | os.PathLike | None = None, with_normals: bool = False,
                 normals_convention: str = "vision_banana", skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        if domain not in DOMAINS + ("all",):
            raise ValueError(f"DIODE domain {domain!r}; expected one of {DOMAINS + ('all',)}")
        self.store = DirStore(root)
        self.with_normals = with_normals
        self.normals_convention = normal_frames.check_convention(normals_convention)
        if file_list is not None:
            lines = pathlib.Path(file_list).read_text().splitlines()
            images = [s.split()[0] for s in lines if s.strip()]
        else:
            images = []
            for d in (DOMAINS if domain == "all" else (domain,)):
                images += [p for p in self.store.list(f"{split}/{d}", ".png")]
        if not images:
            raise FileNotFoundError(f"DIODE: no images for split {split!r} domain {domain!r} "
                                    f"under {self.store.root}")
        self.stems = [p[:-4] for p in images]
        self.name = f"diode/{split}/{domain}"

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def notes(self) -> tuple[str, ...]:
        """The unverified normal axes, for benchmark reports (see `Source.notes`)."""
        if not self.with_normals:
            return ()
        return (f"DIODE normals read as {self.normals_convention!r} axes: DIODE's devkit does not "
                "document the axes (assumed from Marigold's unflipped comparison); a wrong "
                "assumption flips a sign in every DIODE normals number",)

    def _npy(self, rel: str) -> np.ndarray:
        return load_npy(self.store.read(rel), self.store.describe(rel))

    def _load(self, i: int) -> dict:
        stem = self.stems[i]
        image = decode_rgb(self.store.read(stem + ".png"), self.store.describe(stem + ".png"))
        h, w = image.shape[:2]
        dwhat = self.store.describe(stem + "_depth.npy")
        depth = clean_depth(self._npy(stem + "_depth.npy"), what=dwhat)
        mwhat = self.store.describe(stem + "_depth_mask.npy")
        mask = np.squeeze(self._npy(stem + "_depth_mask.npy"))
        for arr, what in ((depth, dwhat), (mask, mwhat)):
            if arr.shape != (h, w):
                raise RecordError(f"{what}: shape {arr.shape} does not match image {(h, w)}")
        if not np.isin(mask, (0, 1)).all():
            raise RecordError(f"{mwhat}: mask values {np.unique(mask)[:5].tolist()}...; expected 0/1")
        depth[mask == 0] = np.nan
        parts = pathlib.PurePosixPath(stem).parts
        meta = {"dataset": "diode", "id": parts[-1],
                "domain": next((p for p in parts if p in DOMAINS), ""),
                "image_path": self.store.describe(stem + ".png"), "depth_path": dwhat,
                "depth_mask_path": mwhat}
        record = {"image": image, "depth": depth, "meta": meta}
        if self.with_normals:
            nwhat = self.store.describe(stem + "_normal.npy")
            normals = normal_frames.to_vision_banana(self._npy(stem + "_normal.npy"),
                                                     self.normals_convention, what=nwhat)
            if normals.shape[:2] != (h, w):
                raise RecordError(f"{nwhat}: normals {normals.shape[:2]} do not match image {(h, w)}")
            record["normals"] = normals
            meta["normals_path"] = nwhat
        return record
