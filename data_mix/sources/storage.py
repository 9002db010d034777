"""Where dataset files live: a directory tree or an official zip archive, read the same way.

Both stores map a POSIX relative path ("gtFine/val/lindau/x_gtFine_labelIds.png") to bytes, so a
reader written once reads an extracted tree and the archive the dataset ships as (Cityscapes'
`gtFine_trainvaltest.zip`) without extracting it.

Zip archives are opened lazily and once per process: a `zipfile.ZipFile` shared across a fork
shares its file offset, and concurrent seeks from grain workers would interleave reads. The
handle is dropped on pickling and reopened when the process id changes.
"""

from __future__ import annotations

import os
import pathlib
import zipfile

from data_mix.sources.base import RecordError


class DirStore:
    """Files under a directory. `describe(rel)` is the absolute file path."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")

    def path(self, rel: str) -> pathlib.Path:
        return self.root / rel

    def describe(self, rel: str) -> str:
        return str(self.root / rel)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def read(self, rel: str) -> bytes:
        p = self.root / rel
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise RecordError(f"missing file {p}") from None
        except OSError as e:
            raise RecordError(f"cannot read {p}: {e}") from None

    def list(self, prefix: str, suffix: str) -> list[str]:
        """Sorted relative paths of the files under folder `prefix` whose names end with `suffix`."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix()
                      for p in base.rglob(f"*{suffix}") if p.is_file())

    def __repr__(self) -> str:
        return f"DirStore({str(self.root)!r})"


class ZipStore:
    """Members of a zip archive, read without extracting. `describe(rel)` is "archive.zip::member"."""

    def __init__(self, zip_path: str | os.PathLike):
        self.zip_path = pathlib.Path(zip_path)
        if not self.zip_path.is_file():
            raise FileNotFoundError(f"dataset archive {self.zip_path} does not exist")
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None
        try:
            self._names = sorted(n for n in self._handle().namelist() if not n.endswith("/"))
        except zipfile.BadZipFile as e:
            raise RecordError(f"{self.zip_path} is not a readable zip archive: {e}") from None
        self._name_set = frozenset(self._names)

    def _handle(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.zip_path)
            self._pid = os.getpid()
        return self._zip

    def describe(self, rel: str) -> str:
        return f"{self.zip_path}::{rel}"

    def exists(self, rel: str) -> bool:
        return rel in self._name_set

    def read(self, rel: str) -> bytes:
        if rel not in self._name_set:
            raise RecordError(f"missing member {rel} in archive {self.zip_path}")
        try:
            return self._handle().read(rel)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            # CRC mismatch, truncated member, ... : a corrupt archive is a bad record.
            raise RecordError(f"cannot read {self.describe(rel)}: {e}") from None

    def list(self, prefix: str, suffix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/"
        return [n for n in self._names if n.startswith(prefix) and n.endswith(suffix)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return f"ZipStore({str(self.zip_path)!r})"
