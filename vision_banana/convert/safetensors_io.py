"""Lazy safetensors reading (row ranges by `pread`) and streaming writing, numpy only.

Format (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON
`{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the raw little-endian row-major data (offsets relative to the end of the header).

Why not `safetensors.safe_open`: it memory-maps whole files, and every page a load touches
stays resident in this process (counted in RSS) until the file is closed, so loading a sharded
12B checkpoint tensor by tensor would still peak at the size of a shard file on top of the
model. Here each read copies exactly the requested rows into a fresh buffer with `os.preadv`;
nothing else of the file is mapped. bfloat16 / float8 come from `ml_dtypes` (a jax dependency).
The files written here are plain safetensors, read back by `safetensors`, diffusers and
transformers.

A sharded checkpoint is a folder with `<prefix>-0000i-of-0000n.safetensors` files and an index
`<prefix>.safetensors.index.json` (`{"metadata": {"total_size": bytes}, "weight_map": {name:
file}}`); `open_checkpoint` reads either form.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES: dict[np.dtype, str] = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 2 ** 20  # the reference implementation's limit


class TensorInfo:
    """Where one tensor lives: file, dtype, shape, absolute byte range."""

    __slots__ = ("file", "name", "dtype", "shape", "begin", "end")

    def __init__(self, file: "SafetensorsFile", name: str, dtype: np.dtype, shape: tuple[int, ...],
                 begin: int, end: int):
        self.file, self.name, self.dtype, self.shape = file, name, dtype, shape
        self.begin, self.end = begin, end

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def read_rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of the leading axis (the whole tensor for 0-d), a fresh array."""
        return self.file.read_rows(self.name, start, stop)

    def __repr__(self) -> str:
        return (f"TensorInfo({self.name!r}, {DTYPE_NAMES[self.dtype]}, {self.shape}, "
                f"{self.file.path})")


class SafetensorsFile:
    """One .safetensors file: parsed header, reads by byte range (no memory map).

    Use as a context manager or call `close()`; reads are thread-safe (`pread` has no shared
    file position).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self.metadata, self.tensors = self._parse_header()
        except Exception:
            os.close(self._fd)
            raise

    def _parse_header(self) -> tuple[dict[str, str], dict[str, TensorInfo]]:
        size = os.fstat(self._fd).st_size
        raw = os.pread(self._fd, 8, 0)
        if len(raw) != 8:
            raise ValueError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{self.path}: header length {n} is invalid for a {size}-byte file; "
                             "not a safetensors file?")
        try:
            header = json.loads(os.pread(self._fd, n, 8))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.path}: header is not JSON ({e}); not a safetensors file?")
        metadata = header.pop("__metadata__", None) or {}
        data_start = 8 + n
        tensors = {}
        for name, spec in header.items():
            if spec["dtype"] not in DTYPES:
                raise ValueError(f"{self.path}: tensor {name!r} has dtype {spec['dtype']!r}; "
                                 f"supported: {sorted(DTYPES)}")
            dtype = DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            begin, end = (data_start + int(o) for o in spec["data_offsets"])
            if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or end > size:
                raise ValueError(f"{self.path}: tensor {name!r} {spec} has an inconsistent byte "
                                 f"range (file size {size})")
            tensors[name] = TensorInfo(self, name, dtype, shape, begin, end)
        return metadata, tensors

    def read_rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of tensor `name` along its leading axis, as a fresh writable array."""
        info = self.tensors[name]
        if not info.shape:
            return self._read(info.begin, info.nbytes).view(info.dtype).reshape(())
        rows = info.shape[0]
        stop = rows if stop is None else stop
        if not 0 <= start <= stop <= rows:
            raise IndexError(f"{self.path}:{name}: rows [{start}, {stop}) outside [0, {rows})")
        row_bytes = info.nbytes // rows if rows else 0
        buf = self._read(info.begin + start * row_bytes, (stop - start) * row_bytes)
        return buf.view(info.dtype).reshape((stop - start,) + info.shape[1:])

    def _read(self, offset: int, nbytes: int) -> np.ndarray:
        buf = np.empty(nbytes, np.uint8)
        view = memoryview(buf)
        done = 0
        while done < nbytes:  # preadv may return short counts (2 GiB per call on Linux)
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{self.path}: unexpected end of file at byte {offset + done}")
            done += got
        return buf

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Checkpoint(Mapping[str, TensorInfo]):
    """Name -> TensorInfo over one file or the shards of an index; closes its files on `close`."""

    def __init__(self, files: Sequence[SafetensorsFile], source: str):
        self.files = list(files)
        self.source = source
        self._tensors: dict[str, TensorInfo] = {}
        for f in self.files:
            for name, info in f.tensors.items():
                if name in self._tensors:
                    raise ValueError(f"{source}: tensor {name!r} appears in both "
                                     f"{self._tensors[name].file.path} and {f.path}")
                self._tensors[name] = info

    def __getitem__(self, name: str) -> TensorInfo:
        try:
            return self._tensors[name]
        except KeyError:
            raise KeyError(f"{self.source}: no tensor {name!r} ({len(self._tensors)} tensors, "
                           f"e.g. {sorted(self._tensors)[:3]})") from None

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in self.files:
            out.update(f.metadata)
        return out

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a .safetensors file, a `*.safetensors.index.json`, or a folder holding exactly one
    weight set (an index, or a single .safetensors file)."""
    path = pathlib.Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        singles = sorted(path.glob("*.safetensors"))
        if len(indexes) == 1:
            path = indexes[0]
        elif not indexes and len(singles) == 1:
            path = singles[0]
        else:
            raise ValueError(f"{path}: expected one *.safetensors.index.json or one *.safetensors "
                             f"file, found {[p.name for p in indexes + singles]}")
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a safetensors index (needs a 'weight_map'): {e}")
        files = []
        try:
            for name in dict.fromkeys(weight_map.values()):
                files.append(SafetensorsFile(path.parent / name))
        except Exception:
            for f in files:
                f.close()
            raise
        ckpt = Checkpoint(files, str(path))
        missing = sorted(set(weight_map) - set(ckpt))
        if missing:
            ckpt.close()
            raise ValueError(f"{path}: tensors listed in the index but absent from the shard "
                             f"files: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        return ckpt
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: expected a .safetensors file, an index json or a folder")
    return Checkpoint([SafetensorsFile(path)], str(path))


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _header(specs: Sequence[tuple[str, tuple[int, ...], np.dtype]],
            metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, shape, dtype in specs:
        dtype = np.dtype(dtype)
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r}: dtype {dtype} cannot be stored in safetensors")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": [int(s) for s in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)  # data aligned to 8 bytes, as the reference pads


def write_file(path: str | os.PathLike,
               specs: Sequence[tuple[str, tuple[int, ...], Any]],
               produce: Callable[[str], np.ndarray],
               metadata: Mapping[str, str] | None = None) -> int:
    """Write one .safetensors file, asking `produce(name)` for each tensor in `specs` order.

    Only one tensor is in memory at a time (the header is written from `specs` first).
    `produce` must return exactly the announced shape and dtype. Returns the data bytes written.
    """
    path = pathlib.Path(path)
    header = _header(specs, metadata)
    total = 0
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for name, shape, dtype in specs:
            arr = np.asarray(produce(name))
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise ValueError(f"{path}: tensor {name!r} is {arr.dtype}{arr.shape}, announced "
                                 f"{np.dtype(dtype)}{tuple(shape)}")
            data = np.ascontiguousarray(arr)
            if data.dtype.byteorder == ">":
                data = data.byteswap().view(data.dtype.newbyteorder("<"))
            f.write(memoryview(data.reshape(-1).view(np.uint8)))
            total += data.nbytes
    os.replace(tmp, path)
    return total


def save_file(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
              metadata: Mapping[str, str] | None = None) -> None:
    """Write a dict of numpy arrays to one .safetensors file (metadata `format: pt` by default,
    which transformers requires)."""
    arrays = {k: np.asarray(v) for k, v in tensors.items()}
    write_file(path, [(k, a.shape, a.dtype) for k, a in arrays.items()], arrays.__getitem__,
               {"format": "pt", **(metadata or {})})


def write_sharded(folder: str | os.PathLike, prefix: str,
                  specs: Iterable[tuple[str, tuple[int, ...], Any]],
                  produce: Callable[[str], np.ndarray], *, max_shard_bytes: int = 5 * 2 ** 30,
                  metadata: Mapping[str, str] | None = None) -> list[pathlib.Path]:
    """Write tensors as `<prefix>.safetensors` (one shard) or `<prefix>-0000i-of-0000n.safetensors`
    plus `<prefix>.safetensors.index.json` (the Hugging Face layout), shards closed at
    `max_shard_bytes` in `specs` order. Returns the files written (index last)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [(n, tuple(int(s) for s in shape), np.dtype(d)) for n, shape, d in specs]
    shards: list[list] = [[]]
    size = 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * spec[2].itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    if len(shards) == 1:
        out = folder / f"{prefix}.safetensors"
        write_file(out, shards[0], produce, {"format": "pt", **(metadata or {})})
        return [out]
    written, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards):
        name = f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_file(folder / name, shard, produce, {"format": "pt", **(metadata or {})})
        weight_map.update({n: name for n, _, _ in shard})
        written.append(folder / name)
    index = folder / f"{prefix}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                indent=2, sort_keys=True))
    return written + [index]
