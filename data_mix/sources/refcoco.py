"""RefCOCO-family referring expressions (RefCOCOg UMD split by default; RefCOCO, RefCOCO+).

On-disk format (lichengunc/refer): a dataset folder with

    refs({splitBy}).p     pickle: list of refs {ref_id, ann_id, image_id, category_id, split
                          ("train" | "val" | "test"), sentences: [{sent_id, sent, raw, tokens}],
                          sent_ids, file_name}
    instances.json        COCO JSON (images, annotations, categories) of the referred objects

plus the COCO train2014 images (`image_dir/COCO_train2014_{id:012d}.jpg`, named by
instances.json). RefCOCOg's UMD split is `refs(umd).p` (val: 1300 images, 2573 objects); RefCOCO
and RefCOCO+ ship `refs(unc).p` whose refs carry split "train", "val", "testA" (people) or
"testB" (other objects).

Splits select refs exactly as the REFER API's `getRefIds(split=...)` does: "train" / "val" by
equality; "test" every ref whose split contains "test" (RefCOCO's testA + testB, RefCOCOg UMD's
test); "testA" / "testB" / "testC" every ref whose split contains that letter (so a "testAB" ref
counts in both); "testAB" / "testBC" / "testAC" by equality. RefCOCOg UMD's splits are plain
"train" / "val" / "test", so its val and test stay exact. The
pickles were written by Python 2; they are read with Python 3 defaults and, when a byte string
is not ASCII, as raw bytes decoded as UTF-8 (latin-1 as a last resort).

Records: one per referred object (`group_by="ref"`, what cIoU/gIoU score per expression) or
one per image with all its referred objects (`group_by="image"`). `referring` is a list of
{"expressions": [sent, ...], "mask": bool (H, W)}; the tokenized lower-case `sent` is used
(as the official REFER API does) and `raw` strings are kept in meta.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from collections import defaultdict

from data_mix.sources.base import RecordError
from data_mix.sources.coco import _CocoBacked, ann_mask

SPLITS = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")


def in_split(ref_split: str, split: str) -> bool:
    """Whether a ref whose stored split is `ref_split` belongs to `split` (REFER's rule)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def dataset_name(refs_file: str | os.PathLike) -> str:
    """"{folder}_{splitBy}" of a refer pickle path, e.g. refcoco+/refs(unc).p -> "refcoco+_unc"."""
    path = pathlib.Path(refs_file)
    stem = path.name
    if stem.startswith("refs(") and stem.endswith(").p"):
        return f"{path.parent.name}_{stem[5:-3]}"
    return path.stem


def load_refs(path: str | os.PathLike) -> list[dict]:
    """The list of refs of a refer pickle (Python 2 or 3)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"refs pickle {path} does not exist")
    data = path.read_bytes()
    try:
        try:
            refs = pickle.loads(data)
        except UnicodeDecodeError:
            # A Python 2 `str` holding non-ASCII bytes: read raw bytes, decode them below.
            refs = _decode_bytes(pickle.loads(data, encoding="bytes"))
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable refs pickle: {e}") from None
    if not isinstance(refs, list) or (refs and not isinstance(refs[0], dict)):
        raise ValueError(f"{path}: expected a list of ref dicts, got {type(refs).__name__}")
    return refs


def _decode_bytes(obj):
    """Python 2 byte strings (keys and values, recursively) as str: UTF-8, else latin-1."""
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode("latin-1")
    if isinstance(obj, list):
        return [_decode_bytes(v) for v in obj]
    if isinstance(obj, dict):
        return {_decode_bytes(k): _decode_bytes(v) for k, v in obj.items()}
    return obj


class RefCOCOSource(_CocoBacked):
    """Referring-segmentation records of a refer-format dataset.

    Args:
      refs_file: e.g. refcocog/refs(umd).p.
      instances_file: e.g. refcocog/instances.json.
      image_dir: COCO train2014 image folder.
      split: one of SPLITS, selected as REFER does (module docstring).
      group_by: "ref" (one object per record) or "image" (all objects of an image).
      dataset: name in meta / source name (default: from the path, "{folder}_{splitBy}",
        e.g. "refcocog_umd", "refcoco_unc").
      skip_bad: see `Source`.

    Record: image uint8 (H, W, 3); referring [{expressions, mask}]; meta {dataset, id, split,
    image_id, file_name, image_path, ref_ids, ann_ids, sent_ids, categories, raw_expressions}.
    """

    def __init__(self, refs_file: str | os.PathLike, instances_file: str | os.PathLike,
                 image_dir: str | os.PathLike, split: str = "val", *, group_by: str = "ref",
                 dataset: str | None = None, skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        if split not in SPLITS:
            raise ValueError(f"refer split {split!r}; expected one of {SPLITS}")
        if group_by not in ("ref", "image"):
            raise ValueError(f"group_by {group_by!r}; expected 'ref' or 'image'")
        self.refs_file = pathlib.Path(refs_file)
        self.annotation_file = pathlib.Path(instances_file)
        self.image_dir = pathlib.Path(image_dir)
        self.split = split
        self.dataset = dataset or dataset_name(self.refs_file)
        refs = [r for r in load_refs(self.refs_file) if in_split(str(r.get("split", "")), split)]
        if not refs:
            raise ValueError(f"{self.refs_file}: no refs with split {split!r}")
        missing = [k for k in ("ref_id", "ann_id", "image_id", "sentences") if k not in refs[0]]
        if missing:
            raise ValueError(f"{self.refs_file}: refs lack keys {missing}")
        refs.sort(key=lambda r: r["ref_id"])
        # Only what records need is kept (small, picklable, JSON-able).
        slim = [{"ref_id": int(r["ref_id"]), "ann_id": int(r["ann_id"]),
                 "image_id": int(r["image_id"]),
                 "sent_ids": [int(s.get("sent_id", -1)) for s in r["sentences"]],
                 "sents": [str(s.get("sent", s.get("raw", ""))) for s in r["sentences"]],
                 "raws": [str(s.get("raw", s.get("sent", ""))) for s in r["sentences"]]}
                for r in refs]
        if group_by == "ref":
            self.groups = [[r] for r in slim]
        else:
            by_image = defaultdict(list)
            for r in slim:
                by_image[r["image_id"]].append(r)
            self.groups = [by_image[k] for k in sorted(by_image)]
        self.group_by = group_by
        self.name = f"{self.dataset}/{split}"

    def __len__(self) -> int:
        return len(self.groups)

    def _load(self, i: int) -> dict:
        group = self.groups[i]
        image_id = group[0]["image_id"]
        if image_id not in self.coco.imgs:
            raise RecordError(f"{self.refs_file}: image {image_id} (ref {group[0]['ref_id']}) is "
                              f"not in {self.annotation_file}")
        image, info, path = self._read_image(image_id)
        h, w = image.shape[:2]
        what = f"{self.annotation_file} (image {image_id})"
        referring, categories = [], []
        for r in group:
            ann = self.coco.anns.get(r["ann_id"])
            if ann is None:
                raise RecordError(f"{self.refs_file}: ref {r['ref_id']} names annotation "
                                  f"{r['ann_id']}, absent from {self.annotation_file}")
            referring.append({"expressions": list(r["sents"]),
                              "mask": ann_mask(self.coco, ann, h, w, what=what)})
            cat = self.coco.cats.get(ann["category_id"], {})
            categories.append(cat.get("name", str(ann["category_id"])))
        ident = (f"{group[0]['ref_id']}" if self.group_by == "ref" else f"image{image_id}")
        meta = {"dataset": self.dataset, "id": ident, "split": self.split,
                "image_id": int(image_id), "file_name": info["file_name"], "image_path": path,
                "ref_ids": [r["ref_id"] for r in group], "ann_ids": [r["ann_id"] for r in group],
                "sent_ids": [r["sent_ids"] for r in group], "categories": categories,
                "raw_expressions": [r["raws"] for r in group]}
        return {"image": image, "referring": referring, "meta": meta}
