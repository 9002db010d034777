"""Dataset readers in the datasets' native on-disk formats, yielding contract records.

Every reader is a random-access, deterministic, picklable `Source` (docs/contracts.md,
"Records"): `len(src)`, `src[i] -> {"image": uint8 (H, W, 3), ..., "meta": {...}}`.

| reader                | dataset / format                                      | targets                     |
|-----------------------|-------------------------------------------------------|-----------------------------|
| CityscapesSource      | leftImg8bit + gtFine trees or the official zips       | semantic (19), instances    |
| NYUv2Source           | nyu_depth_v2_labeled.mat (HDF5), 654-image test split | depth (m), semantic, normals|
| KITTIDepthSource      | raw frames + annotated depth PNG (m*256), Eigen split | depth (m)                   |
| DIODESource           | *_depth.npy, *_depth_mask.npy, *_normal.npy           | depth (m), normals          |
| IBimsSource           | per-image MATLAB v5 .mat (data.rgb/depth/masks)       | depth (m)                   |
| ETH3DSource           | headerless float32 depth, 6048x4032                   | depth (m)                   |
| ScanNetSource         | color JPEG + depth PNG (mm)                           | depth (m)                   |
| VKITTI2Source         | rgb JPEG + depth PNG (cm), 655.35 m = sky             | depth (m), normals          |
| DSINENormalsSource    | DSINE / Marigold layouts (*_img, *_normal.exr/png/npy) | normals                    |
| COCOInstancesSource   | COCO JSON via pycocotools                             | instance masks (+ crowd)    |
| RefCOCOSource         | refs(umd).p + instances.json                          | referring masks             |
| GenerationSource      | JSONL manifest of prompt / target / image             | generation pairs            |
| BinaryMaskFolderSource| images/ + masks/ folders (Kvasir-SEG style)           | binary masks                |
| RestorationPairsSource| input/ + target/ folders (Rain100L style)             | restored images             |

Bad input raises `RecordError` naming the source, record and file; `skip_bad=True` substitutes
the next good record and marks it (`meta["skipped_bad"]`), see `base.py`. Normals come out in
the Vision Banana frame (x right, y up, z toward camera), see `normal_frames.py`.
"""

from data_mix.sources.base import RecordError, Source
from data_mix.sources.cityscapes import CityscapesSource
from data_mix.sources.coco import COCOInstancesSource
from data_mix.sources.diode import DIODESource
from data_mix.sources.dsine import DSINENormalsSource
from data_mix.sources.eth3d import ETH3DSource
from data_mix.sources.generation import GenerationSource
from data_mix.sources.ibims import IBimsSource
from data_mix.sources.kitti import KITTIDepthSource
from data_mix.sources.nyuv2 import NYUv2Source
from data_mix.sources.paired_folders import BinaryMaskFolderSource, RestorationPairsSource
from data_mix.sources.refcoco import RefCOCOSource
from data_mix.sources.scannet import ScanNetSource
from data_mix.sources.vkitti2 import VKITTI2Source

__all__ = [
    "BinaryMaskFolderSource", "RestorationPairsSource", "CityscapesSource", "COCOInstancesSource", "DIODESource", "DSINENormalsSource", "ETH3DSource",  # noqa: E501
    "GenerationSource", "IBimsSource", "KITTIDepthSource", "NYUv2Source", "RecordError",
    "RefCOCOSource", "ScanNetSource", "Source", "VKITTI2Source",
]
