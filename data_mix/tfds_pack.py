"""Pack any record source into a TFDS dataset (ArrayRecord files) and read it back, without TF.

Why: reading a dataset in its native format costs a decode of large PNG/JPEG/HDF5/MATLAB files
per record and random seeks across many small files; a pack is a few ArrayRecord shards with
random access, which grain reads efficiently from local disk or a bucket, and whose records are
already in the contract format (docs/contracts.md, "Records").

    from data_mix import tfds_pack
    from data_mix.sources import CityscapesSource
    path = tfds_pack.pack(CityscapesSource(root, "val"), "/data/packs", name="cityscapes_val")
    src = tfds_pack.PackedSource("/data/packs", "cityscapes_val")   # random access, picklable
    record = src[0]                                                 # same dict as the source's
    grain.MapDataset.source(src) ...

What runs without TensorFlow (ENVIRONMENT.md): a `GeneratorBasedBuilder` with
`file_format="array_record"`, and `tfds.data_source(...)` to read (numpy decoding: images with
OpenCV). `tfds.load`/`as_dataset` need TF and are not used. Images are given to
`tfds.features.Image` as PNG bytes we encode ourselves (its numpy-array path calls TF).

Layout: `{data_dir}/vision_banana_pack/{name}/1.0.0/` (dataset_info.json, features.json,
`vision_banana_pack-{split}.array_record-000NN-of-000MM`). One builder class serves every pack;
the pack's name is its BuilderConfig name. Record order is the source's (shuffling disabled),
so `PackedSource(...)[i] == source[i]` (minus substitutes a `skip_bad` source marked, which are
dropped so each good record is stored once).

Feature encoding per record key:

| key              | feature                                                   |
|------------------|-----------------------------------------------------------|
| image, target    | Image(png): lossless PNG bytes; or Tensor uint8 (H, W, 3) with image_encoding="raw" |
| depth            | Tensor float32 (H, W), raw bytes (NaN / inf kept)          |
| normals          | Tensor float32 (H, W, 3), raw bytes                        |
| semantic         | Tensor int32 (H, W), zlib                                  |
| instance_masks   | Tensor bool (N, H, W), zlib                                |
| mask             | Tensor bool (H, W), zlib (binary-mask datasets)            |
| referring_masks  | Tensor bool (N, H, W), zlib (the `mask` of each `referring` entry) |
| classes, instance_classes, referring (without masks), meta | Text, JSON |
| caption, prompt  | Text                                                       |
| present          | Text, JSON list of the keys the record had (absent keys are stored empty) |
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any

import numpy as np

from data_mix.sources.base import Source
from data_mix.sources.images import encode_png

BUILDER_NAME = "vision_banana_pack"
VERSION = "1.0.0"
IMAGE_KEYS = ("image", "target")
_ARRAY_KEYS = {  # key: (dtype, rank, encoding)
    "depth": (np.float32, 2, "bytes"),
    "normals": (np.float32, 3, "bytes"),
    "semantic": (np.int32, 2, "zlib"),
    "instance_masks": (np.bool_, 3, "zlib"),
    "mask": (np.bool_, 2, "zlib"),
}
_JSON_KEYS = ("classes", "instance_classes", "meta")
_TEXT_KEYS = ("caption", "prompt")
RECORD_KEYS = IMAGE_KEYS + tuple(_ARRAY_KEYS) + _JSON_KEYS + _TEXT_KEYS + ("referring",)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pathlib.PurePath,)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def _features(keys: list[str], image_encoding: str):
    import tensorflow_datasets as tfds

    f = {"present": tfds.features.Text(), "meta": tfds.features.Text()}
    for key in keys:
        if key in IMAGE_KEYS:
            f[key] = (tfds.features.Image(shape=(None, None, 3), encoding_format="png")
                      if image_encoding == "png" else
                      tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib"))
        elif key in _ARRAY_KEYS:
            dtype, rank, enc = _ARRAY_KEYS[key]
            f[key] = tfds.features.Tensor(shape=(None,) * rank, dtype=dtype, encoding=enc)
        elif key == "referring":
            f["referring"] = tfds.features.Text()
            f["referring_masks"] = tfds.features.Tensor(shape=(None, None, None), dtype=np.bool_,
                                                        encoding="zlib")
        elif key in _JSON_KEYS or key in _TEXT_KEYS:
            f[key] = tfds.features.Text()
        else:
            raise ValueError(f"record key {key!r} has no packed encoding; known keys: {RECORD_KEYS}")
    return tfds.features.FeaturesDict(f)


def _empty(key: str, image_encoding: str):
    """Placeholder stored for a key the record lacks (`present` says it is absent). One element,
    not zero: tfds' raw-bytes tensor encoding cannot restore an all-zero-size shape."""
    if key in IMAGE_KEYS:
        return (encode_png(np.zeros((1, 1, 3), np.uint8)) if image_encoding == "png"
                else np.zeros((1, 1, 3), np.uint8))
    if key in _ARRAY_KEYS:
        dtype, rank, _ = _ARRAY_KEYS[key]
        return np.zeros((1,) * rank, dtype)
    return ""


def encode_record(record: dict, keys: list[str], image_encoding: str, *, where: str) -> dict:
    """The TFDS example of one record (schema `keys`); raises naming `where` on a bad field."""
    extra = set(record) - set(keys) - {"meta"}
    if extra:
        raise ValueError(f"{where}: keys {sorted(extra)} are not in the pack schema {keys} "
                         "(pass keys= covering every record)")
    ex: dict[str, Any] = {"present": _dumps(sorted(record)), "meta": _dumps(record.get("meta", {}))}
    for key in keys:
        if key == "meta":
            continue
        if key not in record:
            ex[key] = _empty(key, image_encoding)
            if key == "referring":
                ex["referring_masks"] = np.zeros((1, 1, 1), bool)
            continue
        value = record[key]
        if key in IMAGE_KEYS:
            arr = np.asarray(value)
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"{where}: {key} is {arr.dtype} {arr.shape}; expected uint8 (H, W, 3)")
            ex[key] = encode_png(arr) if image_encoding == "png" else arr
        elif key in _ARRAY_KEYS:
            dtype, rank, _ = _ARRAY_KEYS[key]
            arr = np.asarray(value)
            if arr.ndim != rank:
                raise ValueError(f"{where}: {key} has shape {arr.shape}; expected rank {rank}")
            ex[key] = np.ascontiguousarray(arr.astype(dtype, copy=False))
        elif key == "referring":
            masks = [np.asarray(r["mask"], bool) for r in value]
            ex["referring"] = _dumps([{k: v for k, v in r.items() if k != "mask"} for r in value])
            ex["referring_masks"] = (np.stack(masks) if masks else np.zeros((0, 0, 0), bool))
        elif key in _JSON_KEYS:
            ex[key] = _dumps(value)
        else:
            ex[key] = str(value)
    return ex


_BUILDER = None


def _builder_class():
    """The builder, defined on first use so that importing this module does not import tfds."""
    global _BUILDER
    if _BUILDER is not None:
        return _BUILDER
    import tensorflow_datasets as tfds

    class VisionBananaPack(tfds.core.GeneratorBasedBuilder):
        """A packed record source (see data_mix/tfds_pack.py). One config per pack."""

        VERSION = tfds.core.Version(VERSION)

        def __init__(self, *, source=None, keys=(), image_encoding="png", split="train", **kwargs):
            self._source, self._keys = source, list(keys)
            self._image_encoding, self._split = image_encoding, split
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=_features(self._keys, self._image_encoding),
                description=f"Vision Banana records of {getattr(self._source, 'name', '?')}",
                disable_shuffling=True,
                metadata=tfds.core.MetadataDict(keys=self._keys, image_encoding=self._image_encoding))

        def _split_generators(self, dl_manager):
            return {self._split: self._generate_examples()}

        def _generate_examples(self):
            src = self._source
            for i in range(len(src)):
                record = src[i]
                if record.get("meta", {}).get("skipped_bad"):
                    continue        # a substitute for a bad record: its original is stored too
                yield i, encode_record(record, self._keys, self._image_encoding,
                                       where=f"{getattr(src, 'name', 'source')} record {i}")

    _BUILDER = VisionBananaPack
    return _BUILDER


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]*", name):
        raise ValueError(f"pack name {name!r}: use lower-case letters, digits, '_', '-', '.'")
    return name


def pack(source, data_dir: str | os.PathLike, *, name: str | None = None, split: str = "train",
         keys=None, image_encoding: str = "png") -> pathlib.Path:
    """Write `source` as TFDS ArrayRecord dataset `{data_dir}/vision_banana_pack/{name}/1.0.0`.

    Args:
      source: any random-access record source (len, [i]).
      data_dir: TFDS data dir.
      name: pack name (default: the source's name with '/' -> '_', lower-cased).
      split: split name stored.
      keys: record keys to store (default: those of record 0, plus "meta"); a record with a key
        outside them is an error, a record lacking one stores it empty.
      image_encoding: "png" (lossless, compact) or "raw" (uint8 tensors, zlib).

    Returns the dataset folder. An existing complete pack of the same name is left as is.
    """
    import tensorflow_datasets as tfds

    if image_encoding not in ("png", "raw"):
        raise ValueError(f"image_encoding {image_encoding!r}; expected 'png' or 'raw'")
    name = _check_name(name or re.sub(r"[^a-z0-9_.\-]", "_", getattr(source, "name", "pack").lower()))
    if keys is None:
        keys = sorted(set(source[0]) | {"meta"})
    keys = sorted(set(keys) | {"meta"})
    builder = _builder_class()(source=source, keys=keys, image_encoding=image_encoding, split=split,
                               data_dir=os.fspath(data_dir), config=tfds.core.BuilderConfig(name=name),
                               file_format="array_record")
    builder.download_and_prepare()
    return pathlib.Path(builder.data_dir)


class PackedSource(Source):
    """Records of a pack, read with `tfds.data_source` (ArrayRecord, no TensorFlow).

    Random access, deterministic, picklable (the data source re-opens its files in a worker).
    Record i is the i-th stored record, decoded back to the contract types.
    """

    def __init__(self, data_dir: str | os.PathLike, name: str, *, split: str = "train"):
        super().__init__(skip_bad=False)
        import tensorflow_datasets as tfds

        _builder_class()                    # registers the builder name for tfds.data_source
        self.data_dir, self.pack_name, self.split = os.fspath(data_dir), name, split
        path = pathlib.Path(self.data_dir) / BUILDER_NAME / name
        if not path.is_dir():
            raise FileNotFoundError(f"no pack {name!r} under {self.data_dir} (expected {path})")
        self._ds = tfds.data_source(f"{BUILDER_NAME}/{name}", data_dir=self.data_dir, split=split)
        self.name = f"packed/{name}"

    def __len__(self) -> int:
        return len(self._ds)

    def _load(self, i: int) -> dict:
        ex = self._ds[i]
        present = json.loads(_text(ex["present"]))
        record: dict[str, Any] = {}
        for key in present:
            if key in IMAGE_KEYS:
                record[key] = np.ascontiguousarray(ex[key], dtype=np.uint8)
            elif key in _ARRAY_KEYS:
                record[key] = np.asarray(ex[key], dtype=_ARRAY_KEYS[key][0])
            elif key == "referring":
                entries = json.loads(_text(ex["referring"]))
                masks = np.asarray(ex["referring_masks"], bool)
                record[key] = [{**e, "mask": masks[k]} for k, e in enumerate(entries)]
            elif key in _JSON_KEYS:
                record[key] = json.loads(_text(ex[key]))
            else:
                record[key] = _text(ex[key])
        record.setdefault("meta", json.loads(_text(ex["meta"])))
        return record


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
