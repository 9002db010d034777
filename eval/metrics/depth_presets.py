"""Per-dataset depth evaluation protocols: valid range, evaluation crop / mask, prediction caps.

Follows the Marigold evaluation code (prs-eth/Marigold, `src/dataset/*_dataset.py` and
`script/depth/eval.py`), which Depth Anything, Lotus and most zero-shot depth papers reuse:

| preset      | ground truth valid where             | evaluation mask                        |
|-------------|--------------------------------------|----------------------------------------|
| nyuv2       | 1e-3 < d < 10 m                      | Eigen crop rows 45:471, cols 41:601 (480x640) |
| kitti_garg  | 1e-5 < d < 80 m                      | Garg crop, on the 352x1216 KB crop     |
| kitti_eigen | 1e-5 < d < 80 m                      | Eigen crop, on the 352x1216 KB crop    |
| scannet     | 1e-3 < d < 10 m                      | none                                   |
| eth3d       | 1e-5 < d < inf                       | none                                   |
| diode       | the dataset's validity mask only     | none (range 0.6..350 m caps predictions) |
| ibims1      | 0 < d < 10 m                         | Eigen crop (480x640), as ZoeDepth / Depth Anything |

Predictions are clipped to [min_depth, pred_max] and then to >= 1e-6 (Marigold), so a pure
white pixel (decoded as +inf) counts as pred_max. pred_max is max_depth except for ETH3D,
whose range is unbounded: there it is 1000 m, so one infinite pixel does not make the image's
AbsRel infinite (an assumption of ours; Marigold leaves predictions unbounded there).

Garg / Eigen KITTI masks are fractions of the array they are applied to; as Marigold does,
they are applied to the 352x1216 benchmark crop (`kitti_benchmark_crop`), not to the raw
375x1242 frame as BTS does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

KITTI_BENCHMARK_HW = (352, 1216)
EIGEN_NYU_HW = (480, 640)


@dataclasses.dataclass(frozen=True)
class DepthPreset:
    """How one dataset is scored.

    Attributes:
      name: preset name.
      min_depth, max_depth: metres; ground truth counts where min_depth < d < max_depth.
      crop: evaluation mask: "eigen_nyu", "garg", "eigen_kitti" or None.
      pred_max: upper clip for predictions (metres); None = max_depth.
      gt_range_mask: False where validity comes from the dataset's own mask only (DIODE).
      shape: the (H, W) the crop is defined for, or None for any size.
      source: where the protocol comes from.
    """

    name: str
    min_depth: float
    max_depth: float
    crop: str | None = None
    pred_max: float | None = None
    gt_range_mask: bool = True
    shape: tuple[int, int] | None = None
    source: str = ""

    @property
    def pred_range(self) -> tuple[float, float]:
        """(low, high) clip range of predictions, metres."""
        return self.min_depth, self.max_depth if self.pred_max is None else self.pred_max

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["max_depth"] = None if math.isinf(self.max_depth) else self.max_depth
        return d


PRESETS: dict[str, DepthPreset] = {
    p.name: p
    for p in [
        DepthPreset("nyuv2", 1e-3, 10.0, "eigen_nyu", shape=EIGEN_NYU_HW,
                    source="Marigold nyu_dataset.py (eigen_valid_mask)"),
        DepthPreset("kitti_garg", 1e-5, 80.0, "garg", shape=KITTI_BENCHMARK_HW,
                    source="Marigold kitti_dataset.py (kitti_bm_crop, valid_mask_crop='garg')"),
        DepthPreset("kitti_eigen", 1e-5, 80.0, "eigen_kitti", shape=KITTI_BENCHMARK_HW,
                    source="Marigold kitti_dataset.py (kitti_bm_crop, valid_mask_crop='eigen')"),
        DepthPreset("scannet", 1e-3, 10.0, source="Marigold scannet_dataset.py"),
        DepthPreset("eth3d", 1e-5, math.inf, pred_max=1000.0, source="Marigold eth3d_dataset.py"),
        DepthPreset("diode", 0.6, 350.0, gt_range_mask=False, source="Marigold diode_dataset.py"),
        DepthPreset("ibims1", 0.0, 10.0, "eigen_nyu", shape=EIGEN_NYU_HW,
                    source="ZoeDepth / Depth Anything metric eval config 'ibims'"),
    ]
}
#: The synthetic scenes and decoded targets (the demo, the trainer's `decoded` evaluator): finite
#: depth, sky excluded. Not a dataset benchmark, so kept out of PRESETS.
SYNTHETIC_SCENES = DepthPreset("synthetic_scenes", 1e-3, 100.0,
                               source="finite depth (sky excluded), predictions clipped to [1e-3, 100] m")


def get_preset(preset: str | DepthPreset) -> DepthPreset:
    """A preset by name (or the preset itself)."""
    if isinstance(preset, DepthPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown depth preset {preset!r}; known: {', '.join(sorted(PRESETS))}") from None


def eval_mask(crop: str | None, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the pixels a crop keeps (all True for None)."""
    h, w = shape
    mask = np.zeros(shape, bool)
    if crop is None:
        mask[:] = True
    elif crop == "eigen_nyu":
        if shape != EIGEN_NYU_HW:
            raise ValueError(f"the Eigen NYU crop is defined on {EIGEN_NYU_HW} images, got {shape}")
        mask[45:471, 41:601] = True
    elif crop == "garg":
        mask[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    elif crop == "eigen_kitti":
        mask[int(0.3324324 * h):int(0.91351351 * h), int(0.0359477 * w):int(0.96405229 * w)] = True
    else:
        raise ValueError(f"unknown crop {crop!r}; expected 'eigen_nyu', 'garg', 'eigen_kitti' or None")
    return mask


def kitti_benchmark_crop(image: np.ndarray) -> np.ndarray:
    """The KITTI benchmark crop: bottom 352 rows, centred 1216 columns of (H, W, ...) arrays."""
    h, w = image.shape[:2]
    ch, cw = KITTI_BENCHMARK_HW
    if h < ch or w < cw:
        raise ValueError(f"KITTI frames must be at least {KITTI_BENCHMARK_HW}, got {(h, w)}")
    top, left = h - ch, int((w - cw) / 2)
    return image[top:top + ch, left:left + cw]
