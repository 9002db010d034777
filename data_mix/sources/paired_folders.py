"""Paired image folders: medical binary-mask datasets and restoration pairs, matched by name.

Binary masks (Kvasir-SEG, CVC-ClinicDB, ISIC, ... in their usual release layout):

    {root}/images/{name}.jpg|png|...        8-bit RGB (or gray) photo
    {root}/masks/{name}{mask_suffix}.jpg|png|...   mask: 0/255 (JPEG-noisy in Kvasir-SEG),
                                            0/1, gray or RGB; ISIC names it {name}_segmentation.png

Foreground is read as: 0/1 masks (maximum 1) -> 1; otherwise above half the range (> 127 for
8 bit, so JPEG noise around 0 and 255 stays on its side); colour masks through the mean of
their channels. Records: {"image" uint8 (H, W, 3), "mask" bool (H, W), "meta": {dataset, id
(= name), image_path, mask_path, mask_name (the target, e.g. "polyp", which the binary
builder names in prompts)}}.

Restoration pairs (rain / snow / noise / low-light benchmarks shipped as folder pairs):

    {root}/input/{name}.png|jpg|...         degraded image
    {root}/target/{name}.png|jpg|...        clean reference of the same size

Records: {"image" uint8 (H, W, 3) degraded input, "target" uint8 (H, W, 3) clean image,
"meta": {dataset, id, image_path, target_path, kind}}.

Names are file names without extension (and without `mask_suffix`); every image must have its
partner: unpaired names are an error at construction that lists them. Records come sorted by
name.
"""

from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from data_mix.sources.base import RecordError, Source
from data_mix.sources.images import decode_rgb
from data_mix.sources.storage import DirStore

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _index(store: DirStore, folder: str, suffix: str = "") -> dict[str, str]:
    """{name: relative path} of the images in `folder`, names stripped of extension and `suffix`."""
    if not (store.root / folder).is_dir():
        raise FileNotFoundError(f"folder {store.root / folder} does not exist")
    out: dict[str, str] = {}
    for rel in store.list(folder, ""):
        path = pathlib.PurePosixPath(rel)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.stem.endswith(suffix):
            continue
        name = path.relative_to(folder).with_suffix("").as_posix()
        name = name[: len(name) - len(suffix)] if suffix else name
        if name in out:
            raise ValueError(f"two files for {name!r} in {store.root / folder}: {out[name]} and {rel}")
        out[name] = rel
    if not out:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {store.root / folder}")
    return out


def _pair(store: DirStore, a: str, b: str, suffix_b: str = "") -> list[tuple[str, str, str]]:
    """(name, rel in a, rel in b) for names present in both folders; unpaired names raise."""
    left, right = _index(store, a), _index(store, b, suffix_b)
    only_left, only_right = sorted(left.keys() - right.keys()), sorted(right.keys() - left.keys())
    if only_left or only_right:
        naming = f"; partners are named <name>{suffix_b}.*" if suffix_b else ""
        raise ValueError(f"{store.root}: unpaired files: {len(only_left)} in {a}/ without a partner in {b}/ "
                         f"(e.g. {only_left[:5]}), {len(only_right)} in {b}/ without one in {a}/ "
                         f"(e.g. {only_right[:5]}){naming}")
    return [(name, left[name], right[name]) for name in sorted(left)]


def decode_mask(data: bytes, what: str) -> np.ndarray:
    """bool (H, W) foreground of mask image bytes (see the module docstring for the rule)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None:
        raise RecordError(f"{what}: not a decodable image")
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    if arr.max(initial=0) <= 1:
        return arr >= 1
    return arr > (127.5 if arr.max() <= 255 else 32767.5)


class BinaryMaskFolderSource(Source):
    """Images with one binary mask each (medical segmentation layouts).

    Args:
      root: dataset folder.
      images, masks: sub-folder names (default "images", "masks").
      mask_suffix: what mask names add to the image name (ISIC: "_segmentation").
      target: the segmented object, stored as meta["mask_name"] (e.g. "polyp", "skin lesion").
      dataset: name in meta (default: root's folder name).
      skip_bad: see `Source`.
    """

    def __init__(self, root: str | os.PathLike, *, images: str = "images", masks: str = "masks",
                 mask_suffix: str = "", target: str = "polyp", dataset: str | None = None,
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.pairs = _pair(self.store, images, masks, mask_suffix)
        self.target = target
        self.dataset = dataset or self.store.root.name
        self.name = f"binary/{self.dataset}"

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> dict:
        name, image_rel, mask_rel = self.pairs[i]
        image = decode_rgb(self.store.read(image_rel), self.store.describe(image_rel))
        what = self.store.describe(mask_rel)
        mask = decode_mask(self.store.read(mask_rel), what)
        if mask.shape != image.shape[:2]:
            raise RecordError(f"{what}: mask {mask.shape} does not match image {image.shape[:2]}")
        meta = {"dataset": self.dataset, "id": name, "image_path": self.store.describe(image_rel),
                "mask_path": what, "mask_name": self.target}
        return {"image": image, "mask": mask, "meta": meta}


class RestorationPairsSource(Source):
    """Degraded inputs with their clean targets.

    Args:
      root: dataset folder.
      inputs, targets: sub-folder names (default "input", "target").
      kind: the degradation (a `tasks.restoration.KINDS` name such as "derain"), stored in meta.
      dataset: name in meta (default: root's folder name).
      skip_bad: see `Source`.
    """

    def __init__(self, root: str | os.PathLike, *, inputs: str = "input", targets: str = "target",
                 kind: str | None = None, dataset: str | None = None, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.store = DirStore(root)
        self.pairs = _pair(self.store, inputs, targets)
        self.kind = kind
        self.dataset = dataset or self.store.root.name
        self.name = f"restoration/{self.dataset}"

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> dict:
        name, input_rel, target_rel = self.pairs[i]
        image = decode_rgb(self.store.read(input_rel), self.store.describe(input_rel))
        target = decode_rgb(self.store.read(target_rel), self.store.describe(target_rel))
        if target.shape != image.shape:
            raise RecordError(f"{self.store.describe(target_rel)}: target {target.shape[:2]} does not "
                              f"match input {image.shape[:2]} ({self.store.describe(input_rel)})")
        meta = {"dataset": self.dataset, "id": name, "image_path": self.store.describe(input_rel),
                "target_path": self.store.describe(target_rel), "kind": self.kind}
        return {"image": image, "target": target, "meta": meta}
