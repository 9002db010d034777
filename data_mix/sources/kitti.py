"""KITTI depth on the Eigen split: raw RGB frames with the annotated (projected LiDAR) depth.

On-disk formats:

    raw_root/{date}/{date}_drive_{nnnn}_sync/image_02/data/{frame:010d}.png   8-bit RGB, ~375x1242
    raw_root/{date}/calib_cam_to_cam.txt                                      P_rect_02 / P_rect_03
    depth_root/{train|val}/{drive}/proj_depth/groundtruth/image_02/{frame}.png  uint16, metres*256

Depth scale: value / 256 metres; 0 = no LiDAR return (invalid, NaN in records).

Split files (one frame per line), any of the common layouts:

    2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377
    2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png None 721.5377
    2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.jpg 2011_09_26/2011_09_26_drive_0002_sync/image_03/data/0000000069.jpg
    2011_09_26/2011_09_26_drive_0002_sync 69 l

(BTS / Marigold "with_gt" lines, Monodepth, Monodepth2). The Eigen test split has 697 frames,
652 of which have annotated depth; `require_depth=True` keeps those 652. A frame whose line
names a depth file that is missing is a bad record (an error naming the file); a frame whose
depth is looked up (no path in the line) and absent simply has none.

Evaluation info in `meta`: `image_size` (H, W); `kb_crop` = (top, left, 352, 1216), the KITTI
benchmark crop (bottom rows, horizontally centred); `eval_crops` = {"garg": ..., "eigen": ...}
as [y0, y1, x0, x1] on the full frame (Garg ECCV16 / Eigen NIPS14 masks, as in BTS and
Marigold); `intrinsics` from the date's P_rect (or the focal of the split line).
"""  # noqa: E501

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources.base import RecordError, Source, clean_depth
from data_mix.sources.images import decode_png16, decode_rgb
from data_mix.sources.storage import DirStore

DEPTH_SCALE = 256.0                   # uint16 value per metre
KB_CROP_HEIGHT, KB_CROP_WIDTH = 352, 1216
_GARG = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
_EIGEN = (0.3324324, 0.91351351, 0.0359477, 0.96405229)


def crop_info(height: int, width: int) -> dict:
    """KITTI benchmark crop and Garg/Eigen evaluation boxes for a frame of (height, width)."""
    def box(f):
        return [int(f[0] * height), int(f[1] * height), int(f[2] * width), int(f[3] * width)]
    return {"kb_crop": [height - KB_CROP_HEIGHT, (width - KB_CROP_WIDTH) // 2,
                        KB_CROP_HEIGHT, KB_CROP_WIDTH],
            "eval_crops": {"garg": box(_GARG), "eigen": box(_EIGEN)}}


def parse_split_line(line: str, *, what: str) -> dict:
    """{image_rel, camera, drive, date, frame, depth_rel (None: look up; "none": no depth), focal}."""
    tokens = line.split()
    if len(tokens) == 3 and tokens[2] in ("l", "r") and "/" not in tokens[1]:
        folder, frame, side = tokens
        try:
            frame = f"{int(frame):010d}"
        except ValueError:
            raise ValueError(f"{what}: frame {tokens[1]!r} is not an integer") from None
        camera = "image_02" if side == "l" else "image_03"
        tokens = [f"{folder}/{camera}/data/{frame}.png"]
    parts = tokens[0].split("/")
    if len(parts) < 5 or not parts[2].startswith("image_0"):
        raise ValueError(f"{what}: cannot parse {line!r}; expected "
                         "'{date}/{drive}/image_0X/data/{frame}.png [depth|None] [focal]' or "
                         "'{date}/{drive} {frame} l|r'")
    entry = {"image_rel": tokens[0], "date": parts[0], "drive": parts[1], "camera": parts[2],
             "frame": pathlib.PurePosixPath(parts[-1]).stem, "depth_rel": None, "focal": None}
    if len(tokens) >= 2:
        if tokens[1] == "None":
            entry["depth_rel"] = "none"
        elif "proj_depth" in tokens[1]:
            entry["depth_rel"] = tokens[1]
    if len(tokens) >= 3:
        try:
            entry["focal"] = float(tokens[2])
        except ValueError:
            pass
    return entry


def read_calib(path: pathlib.Path) -> dict[str, list[float]]:
    """{key: numbers} of a KITTI calib_cam_to_cam.txt (lines 'KEY: v v v ...')."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        try:
            out[key.strip()] = [float(v) for v in rest.split()]
        except ValueError:
            continue                                  # calib_time: 09-Jan-2012 13:57:47
    return out


class KITTIDepthSource(Source):
    """KITTI frames with annotated depth, listed by an Eigen-style split file.

    Args:
      raw_root: KITTI raw data folder (holds the {date}/ folders).
      depth_root: `data_depth_annotated` folder (holds train/ and val/).
      split_file: the frame list (see module docstring), e.g. eigen_test_files_with_gt.txt.
      require_depth: keep only frames with annotated depth (652 of the 697 Eigen test frames).
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3) full frame; depth float32 metres (NaN invalid) when present;
    meta {dataset, id, image_path, depth_path, image_size, kb_crop, eval_crops, intrinsics}.
    """

    def __init__(self, raw_root: str | os.PathLike, depth_root: str | os.PathLike,
                 split_file: str | os.PathLike, *, require_depth: bool = True,
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.raw = DirStore(raw_root)
        self.depth = DirStore(depth_root)
        self.split_file = pathlib.Path(split_file)
        lines = [(n, s.strip()) for n, s in enumerate(self.split_file.read_text().splitlines(), 1)]
        entries = [parse_split_line(s, what=f"{self.split_file}:{n}") for n, s in lines if s]
        for e in entries:
            e["depth_rel"] = self._resolve_depth(e)
        self.num_listed = len(entries)
        self.num_without_depth = sum(e["depth_rel"] is None for e in entries)
        self.entries = [e for e in entries if e["depth_rel"] is not None or not require_depth]
        self.name = f"kitti/{self.split_file.stem}"
        self._calib: dict[str, dict | None] = {}

    def _resolve_depth(self, e: dict) -> str | None:
        """Depth path relative to depth_root; None when the frame has no annotated depth."""
        if e["depth_rel"] == "none":
            return None
        tail = f"{e['drive']}/proj_depth/groundtruth/{e['camera']}/{e['frame']}.png"
        named = e["depth_rel"]
        candidates = ([named, f"train/{named}", f"val/{named}"] if named
                      else [f"train/{tail}", f"val/{tail}", tail])
        for rel in candidates:
            if self.depth.exists(rel):
                return rel
        # A depth file named by the split but absent is a bad record (reported when read).
        return named if named else None

    def __len__(self) -> int:
        return len(self.entries)

    def _intrinsics(self, e: dict) -> dict | None:
        date = e["date"]
        if date not in self._calib:
            path = self.raw.path(f"{date}/calib_cam_to_cam.txt")
            self._calib[date] = read_calib(path) if path.is_file() else None
        calib = self._calib[date]
        key = "P_rect_" + e["camera"][-2:]
        if calib and len(calib.get(key, [])) == 12:
            p = calib[key]
            return {"fx": p[0], "fy": p[5], "cx": p[2], "cy": p[6]}
        if e["focal"] is not None:
            return {"fx": e["focal"], "fy": e["focal"]}
        return None

    def _load(self, i: int) -> dict:
        e = self.entries[i]
        rel = e["image_rel"]
        if not self.raw.exists(rel):
            # Monodepth lists .jpg conversions of the .png raw frames (and vice versa).
            alt = rel[:-4] + (".png" if rel.endswith(".jpg") else ".jpg")
            rel = alt if self.raw.exists(alt) else rel
        image = decode_rgb(self.raw.read(rel), self.raw.describe(rel))
        h, w = image.shape[:2]
        meta = {"dataset": "kitti", "id": f"{e['drive']}/{e['camera']}/{e['frame']}",
                "image_path": self.raw.describe(rel), "image_size": [h, w], **crop_info(h, w)}
        intr = self._intrinsics(e)
        if intr is not None:
            meta["intrinsics"] = intr
        record = {"image": image, "meta": meta}
        if e["depth_rel"] is not None:
            what = self.depth.describe(e["depth_rel"])
            raw = decode_png16(self.depth.read(e["depth_rel"]), what)
            if raw.shape != (h, w):
                raise RecordError(f"{what}: depth {raw.shape} does not match image {(h, w)} "
                                  f"({meta['image_path']})")
            record["depth"] = clean_depth(raw.astype(np.float32) / DEPTH_SCALE, what=what)
            meta["depth_path"] = what
        return record
