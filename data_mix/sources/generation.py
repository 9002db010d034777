"""Generation data (the generator's own share of the mixture) from a JSONL manifest.

Manifest format, one JSON object per line:

    {"prompt": "a red bicycle leaning on a wall", "target": "images/0001.png", "image": null}
    {"prompt": "make it night time", "target": "edits/0002_out.jpg", "image": "edits/0002_in.jpg"}

`target` (required) and `image` (optional; null or absent for text-to-image) are paths relative
to the manifest's folder (absolute paths are used as given). Optional "id" names the record;
any other keys are kept in `meta["extra"]`. Blank lines are skipped; a malformed line is an
error naming the manifest and the line number, raised at construction.

Records: {"prompt": str, "target": uint8 (H, W, 3), "image": uint8 (H, W, 3) only for edits,
"meta": {dataset, id, line, target_path, image_path?, extra?}}.
"""

from __future__ import annotations

import json
import os
import pathlib

from data_mix.sources.base import RecordError, Source
from data_mix.sources.images import decode_rgb

_KNOWN = {"prompt", "target", "image", "id"}


def _read_file(path: pathlib.Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"missing file {path}") from None
    except OSError as e:
        raise RecordError(f"cannot read {path}: {e}") from None


class GenerationSource(Source):
    """Text-to-image and edit pairs listed by a JSONL manifest.

    Args:
      manifest: path of the .jsonl file.
      name: source name (default "generation/{manifest stem}").
      skip_bad: see `Source`.
    """

    def __init__(self, manifest: str | os.PathLike, *, name: str | None = None,
                 skip_bad: bool = False):
        super().__init__(skip_bad=skip_bad)
        self.manifest = pathlib.Path(manifest)
        self.folder = self.manifest.parent
        entries = []
        for n, line in enumerate(self.manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{self.manifest}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for key in ("prompt", "target"):
                if not isinstance(obj.get(key), str) or not obj[key]:
                    raise ValueError(f"{where}: {key!r} must be a non-empty string, got {obj.get(key)!r}")
            if obj.get("image") is not None and not isinstance(obj["image"], str):
                raise ValueError(f"{where}: 'image' must be a path string or null, got {obj['image']!r}")
            entries.append({"line": n, "prompt": obj["prompt"], "target": obj["target"],
                            "image": obj.get("image"), "id": str(obj.get("id", n)),
                            "extra": {k: v for k, v in obj.items() if k not in _KNOWN}})
        if not entries:
            raise ValueError(f"{self.manifest}: no entries")
        self.entries = entries
        self.name = name or f"generation/{self.manifest.stem}"

    def __len__(self) -> int:
        return len(self.entries)

    def _path(self, rel: str) -> pathlib.Path:
        p = pathlib.Path(rel)
        return p if p.is_absolute() else self.folder / p

    def _load(self, i: int) -> dict:
        e = self.entries[i]
        target_path = self._path(e["target"])
        meta = {"dataset": "generation", "id": e["id"], "line": e["line"],
                "manifest": str(self.manifest), "target_path": str(target_path)}
        if e["extra"]:
            meta["extra"] = e["extra"]
        record = {"prompt": e["prompt"],
                  "target": decode_rgb(_read_file(target_path), str(target_path)), "meta": meta}
        if e["image"] is not None:
            image_path = self._path(e["image"])
            record["image"] = decode_rgb(_read_file(image_path), str(image_path))
            meta["image_path"] = str(image_path)
        return record
