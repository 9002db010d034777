"""NYU Depth v2 (labeled subset): RGB, metric depth, 894-class labels, optional normals.

On-disk format: the official `nyu_depth_v2_labeled.mat`, a MATLAB v7.3 file (= HDF5, read with
h5py). MATLAB stores arrays column-major, so h5py sees every array with its axes reversed:

    images     MATLAB 480x640x3x1449 uint8  -> h5py (1449, 3, 640, 480)
    depths     MATLAB 480x640x1449 single   -> h5py (1449, 640, 480)   metres, in-painted
    rawDepths  MATLAB 480x640x1449 single   -> h5py (1449, 640, 480)   metres, 0 = no return
    labels     MATLAB 480x640x1449 uint16   -> h5py (1449, 640, 480)   0 = unlabeled, 1..894
    names      MATLAB 894x1 cell of char    -> h5py (1, 894) object references to uint16 chars

so image i is `images[i].transpose(2, 1, 0)` and maps are `depths[i].T`. Scale: metres.

Which depth: `depths` is the raw Kinect depth in-painted with Levin et al.'s colorization (no
holes; the filled pixels are not measurements), `rawDepths` the projected sensor depth with
0 where the sensor had no return. The depth benchmarks score the raw depth with zero =
invalid: Marigold evaluates `depth_raw_linear` with `valid_mask_raw`, and its maintainers state
(Marigold issue #114) that its NYUv2 copy holds the raw depth only, the dense version being an
interpolation; BTS / ZoeDepth extract `rawDepths` from this .mat for their test images. `for_depth_benchmark`
builds that reader (`depth="raw"`, or `"inpainted"` to score the filled maps; its `notes` name
the choice for the report). The plain constructor keeps `depth_key="depths"`, the hole-free
maps training mixtures use.

Split: the standard 654-image test set (`testNdxs`, 1-based) is embedded
(`nyuv2_split.TEST_INDICES`), or read from the official `splits.mat` (`trainNdxs`, `testNdxs`).

Normals are not part of the release. `normals_dir` reads a folder with one file per labeled
image, named by its 0-based index: `{index:06d}_normal.png` (RGB (n+1)/2, 8- or 16-bit,
all-zero = invalid: DSINE's release of the GeoNet ground truth, "dsine" axes) or
`{index:06d}_normal.npy` (float (H, W, 3): Marigold's copy, x right / y up / z toward the
camera, "vision_banana" axes). `normals_convention` overrides these per-format defaults (see
normal_frames.py).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_mix.sources import normal_frames
from data_mix.sources.base import RecordError, Source, check_label_range, clean_depth
from data_mix.sources.images import decode_color_any_depth, load_npy
from data_mix.sources.nyuv2_split import TEST_INDICES

NUM_LABELED = 1449
HEIGHT, WIDTH = 480, 640
#: RGB camera intrinsics of the NYU toolbox (camera_params.m), pixels.
INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
#: Eigen et al. evaluation crop [top:bottom, left:right] on the 480x640 frame.
EIGEN_CROP = (45, 471, 41, 601)
#: Depth ground truth of the benchmark choices: the .mat dataset each one reads.
BENCHMARK_DEPTH = {"raw": "rawDepths", "inpainted": "depths"}
_DEPTH_NOTES = {
    "rawDepths": "NYUv2 depth ground truth: rawDepths (raw Kinect depth, 0 = no return = not "
                 "scored), as Marigold, BTS and ZoeDepth evaluate",
    "depths": "NYUv2 depth ground truth: depths (in-painted by colorization, no holes; filled "
              "pixels are scored): not comparable with rows computed on the raw depth",
}


def read_split(splits_mat: str | os.PathLike, split: str) -> list[int]:
    """1-based indices of `split` ("train" | "test") from the official splits.mat."""
    import scipy.io

    key = {"train": "trainNdxs", "test": "testNdxs"}[split]
    try:
        mat = scipy.io.loadmat(splits_mat)
    except (OSError, ValueError) as e:
        raise RecordError(f"{splits_mat}: not a readable MATLAB file: {e}") from None
    if key not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise RecordError(f"{splits_mat}: no variable {key!r} (has {names})")
    return [int(v) for v in np.asarray(mat[key]).ravel()]


class NYUv2Source(Source):
    """NYU Depth v2 labeled images as records.

    Args:
      mat_path: nyu_depth_v2_labeled.mat.
      split: "test" (654), "train" (795) or "all" (every image in the file).
      splits_mat: optional official splits.mat; without it the embedded test list is used.
      indices: explicit 1-based indices (overrides split).
      depth_key: "depths" (in-painted, hole-free) or "rawDepths" (raw sensor, 0 = invalid:
        what the depth benchmarks score, see `for_depth_benchmark`).
      normals_dir: optional folder of normals; normals_convention: their axes (None: "dsine"
        for PNG, "vision_banana" for .npy), see module docstring.
      skip_bad: see `Source`.

    Record: image uint8 (480, 640, 3); depth float32 metres (NaN invalid); semantic int32
    (label - 1, -1 unlabeled) with classes = the file's 894 names; normals if normals_dir;
    meta {dataset, id, index (1-based), mat_path, intrinsics, eval_crop}.
    """

    def __init__(self, mat_path: str | os.PathLike, split: str = "test", *,
                 splits_mat: str | os.PathLike | None = None, indices=None,
                 depth_key: str = "depths", normals_dir: str | os.PathLike | None = None,
                 normals_convention: str | None = None, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.mat_path = pathlib.Path(mat_path)
        if depth_key not in ("depths", "rawDepths"):
            raise ValueError(f"depth_key {depth_key!r}; expected 'depths' or 'rawDepths'")
        self.depth_key = depth_key
        self.normals_dir = pathlib.Path(normals_dir) if normals_dir is not None else None
        self.normals_convention = (normal_frames.check_convention(normals_convention)
                                   if normals_convention is not None else None)
        self._h5 = None
        self._pid = None
        try:
            f = self._file()
        except OSError as e:
            raise FileNotFoundError(f"NYUv2: cannot open {self.mat_path} as MATLAB v7.3/HDF5: {e}") from None
        for key in ("images", depth_key, "labels", "names"):
            if key not in f:
                raise KeyError(f"NYUv2: {self.mat_path} has no dataset {key!r} (has {sorted(f.keys())})")
        n, c, w, h = f["images"].shape
        if c != 3:
            raise ValueError(f"NYUv2: {self.mat_path} 'images' has shape {f['images'].shape}; "
                             "expected (N, 3, W, H) as MATLAB stores HxWx3xN")
        self.num_images, self.height, self.width = n, h, w
        self.classes = [self._ref_to_str(f, ref) for ref in np.asarray(f["names"]).ravel()]
        if indices is not None:
            chosen, label = [int(v) for v in indices], "custom"
        elif split == "all":
            chosen, label = list(range(1, n + 1)), "all"
        elif split in ("train", "test"):
            if splits_mat is not None:
                chosen = read_split(splits_mat, split)
            elif n == NUM_LABELED:
                test = set(TEST_INDICES)
                chosen = list(TEST_INDICES) if split == "test" else [
                    i for i in range(1, n + 1) if i not in test]
            else:
                raise ValueError(f"NYUv2: {self.mat_path} holds {n} images, not {NUM_LABELED}; "
                                 "the embedded split does not apply: pass splits_mat= or indices=")
            label = split
        else:
            raise ValueError(f"NYUv2 split {split!r}; expected 'train', 'test' or 'all'")
        bad = [i for i in chosen if not 1 <= i <= n]
        if bad:
            raise ValueError(f"NYUv2: indices {bad[:5]} out of range 1..{n} of {self.mat_path}")
        self.indices = chosen
        self.name = f"nyuv2/{label}"

    @classmethod
    def for_depth_benchmark(cls, mat_path: str | os.PathLike, *, depth: str = "raw",
                            splits_mat: str | os.PathLike | None = None, **kwargs) -> "NYUv2Source":
        """The 654-image test set as the depth benchmarks read it.

        depth: "raw" (`rawDepths`, zero = invalid: Marigold / BTS / ZoeDepth) or "inpainted"
        (`depths`). Other keyword arguments go to the constructor.
        """
        if depth not in BENCHMARK_DEPTH:
            raise ValueError(f"NYUv2 benchmark depth {depth!r}; expected one of {sorted(BENCHMARK_DEPTH)}")
        source = cls(mat_path, "test", splits_mat=splits_mat, depth_key=BENCHMARK_DEPTH[depth], **kwargs)
        source.notes = (_DEPTH_NOTES[source.depth_key],)      # printed by the depth report
        return source

    @staticmethod
    def _ref_to_str(f, ref) -> str:
        chars = np.asarray(f[ref]).ravel()
        return "".join(chr(int(c)) for c in chars)

    def _file(self):
        import h5py

        # One handle per process: HDF5 handles must not cross a fork.
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.mat_path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def _normals(self, k: int) -> tuple[np.ndarray, str] | None:
        for suffix in ("_normal.png", "_normal.npy"):
            path = self.normals_dir / f"{k:06d}{suffix}"
            if path.is_file():
                data = path.read_bytes()
                if suffix.endswith(".png"):
                    n = normal_frames.from_rgb(decode_color_any_depth(data, str(path)),
                                               self.normals_convention or "dsine", what=str(path))
                else:
                    n = normal_frames.to_vision_banana(load_npy(data, str(path)),
                                                       self.normals_convention or "vision_banana",
                                                       what=str(path))
                return n, str(path)
        raise RecordError(f"missing normals {self.normals_dir / f'{k:06d}_normal.png'} (or .npy)")

    def _load(self, i: int) -> dict:
        index = self.indices[i]                       # 1-based, MATLAB's numbering
        k = index - 1
        f = self._file()
        what = f"{self.mat_path}[{{key}}][{index}]"
        image = np.ascontiguousarray(np.asarray(f["images"][k]).transpose(2, 1, 0))
        if image.dtype != np.uint8:
            raise RecordError(f"{what.format(key='images')}: expected uint8, got {image.dtype}")
        depth = clean_depth(np.asarray(f[self.depth_key][k]).T, what=what.format(key=self.depth_key))
        labels = np.asarray(f["labels"][k]).T
        check_label_range(labels, np.arange(len(self.classes) + 1), what=what.format(key="labels"))
        record = {
            "image": image,
            "depth": depth,
            "semantic": labels.astype(np.int32) - 1,
            "classes": list(self.classes),
            "meta": {"dataset": "nyuv2", "id": f"{index:04d}", "index": index,
                     "mat_path": str(self.mat_path), "intrinsics": dict(INTRINSICS),
                     "eval_crop": list(EIGEN_CROP), "depth_key": self.depth_key},
        }
        if self.normals_dir is not None:
            normals, path = self._normals(k)
            if normals.shape[:2] != image.shape[:2]:
                raise RecordError(f"{path}: normals {normals.shape[:2]} do not match image {image.shape[:2]}")
            record["normals"] = normals
            record["meta"]["normals_path"] = path
        return record
