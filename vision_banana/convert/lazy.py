"""Lazy tensors: a checkpoint tensor seen through renames, transposes and concatenations.

A public checkpoint and our NNX tree hold the same numbers in different layouts: PyTorch
`Linear.weight` (out, in) is our `kernel` (in, out); diffusers keeps `to_q`, `to_k`, `to_v` where
BFL (and we) keep one fused `qkv`; diffusers' final adaLN stores (scale, shift) where BFL stores
(shift, scale). A `Rule` states one such correspondence; `Rule.lazy(ckpt)` gives a `Lazy` with
the target's shape whose `read(index)` returns any rectangular block of the target, reading only
the checkpoint rows that block needs; `Rule.export(array)` runs the correspondence backwards.

Index convention: a block is `((start, stop), ...)`, one half-open range per axis of the target
(the form `jax.make_array_from_callback` asks for, after `normalize_index`).

Reads go to disk each time unless a range was `prefetch`ed: the loader prefetches the bounding
box of the blocks one host needs (so shards sliced across a checkpoint tensor's columns read it
once, not once per device) and `release`s it after the target array is built.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from vision_banana.convert.safetensors_io import TensorInfo

Index = tuple[tuple[int, int], ...]

# Layout kinds: checkpoint layout -> ours, as an axis permutation (plus leading unit axes).
KINDS = {
    "copy": ((), 0),             # vectors, norms, embeddings (vocab, dim)
    "linear": ((1, 0), 0),       # torch Linear (out, in) -> kernel (in, out)
    "conv": ((2, 3, 1, 0), 0),   # torch Conv2d (O, I, kh, kw) -> (kh, kw, I, O)
    "linear_as_conv": ((1, 0), 2),  # diffusers' Linear (O, I) -> our 1x1 conv (1, 1, I, O)
}


def normalize_index(index, shape: Sequence[int]) -> Index:
    """A tuple of slices (or None = everything) -> ((start, stop), ...) over `shape`."""
    if index is None:
        index = ()
    index = tuple(index) + (slice(None),) * (len(shape) - len(tuple(index)))
    out = []
    for s, n in zip(index, shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"strided index {s} is not supported")
        out.append((start, max(start, stop)))
    return tuple(out)


def full_index(shape: Sequence[int]) -> Index:
    return tuple((0, int(n)) for n in shape)


class Lazy(abc.ABC):
    """A tensor that can be read block by block. Subclasses set `shape` and `dtype`."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @abc.abstractmethod
    def read(self, index: Index) -> np.ndarray:
        """The block `index` of this tensor (may be a view of prefetched data)."""

    def prefetch(self, index: Index) -> None:
        """Keep the checkpoint rows behind block `index` in memory until `release`."""

    def release(self) -> None:
        """Drop what `prefetch` kept."""

    def __getitem__(self, index) -> np.ndarray:
        return self.read(normalize_index(index if isinstance(index, tuple) else (index,),
                                         self.shape))

    def numpy(self) -> np.ndarray:
        return self.read(full_index(self.shape))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class Stored(Lazy):
    """One tensor of a safetensors checkpoint; reads whole rows of its leading axis."""

    def __init__(self, info: TensorInfo):
        self.info = info
        self.shape, self.dtype = info.shape, info.dtype
        self._cache: tuple[int, int, np.ndarray] | None = None

    def read(self, index: Index) -> np.ndarray:
        if not self.shape:
            return self.info.read_rows()
        (r0, r1), rest = index[0], index[1:]
        if self._cache is not None and self._cache[0] <= r0 and r1 <= self._cache[1]:
            block = self._cache[2][r0 - self._cache[0]:r1 - self._cache[0]]
        else:
            block = self.info.read_rows(r0, r1)
        return block[(slice(None),) + tuple(slice(a, b) for a, b in rest)]

    def prefetch(self, index: Index) -> None:
        if self.shape:
            r0, r1 = index[0]
            if self._cache is not None:  # one block covering both (a tensor used twice)
                r0, r1 = min(r0, self._cache[0]), max(r1, self._cache[1])
                if (r0, r1) == self._cache[:2]:
                    return
            self._cache = None
            self._cache = (r0, r1, self.info.read_rows(r0, r1))

    def release(self) -> None:
        self._cache = None

    def __repr__(self) -> str:
        return f"Stored({self.info.name!r})"


class _Unary(Lazy):
    def __init__(self, src: Lazy):
        self.src = src
        self.dtype = src.dtype

    @abc.abstractmethod
    def _src_index(self, index: Index) -> Index:
        """The block of `src` behind block `index` of this tensor."""

    def prefetch(self, index: Index) -> None:
        self.src.prefetch(self._src_index(index))

    def release(self) -> None:
        self.src.release()


class Transposed(_Unary):
    """`src.transpose(perm)`: axis i of this tensor is axis perm[i] of src."""

    def __init__(self, src: Lazy, perm: Sequence[int]):
        super().__init__(src)
        self.perm = tuple(perm)
        if sorted(self.perm) != list(range(len(src.shape))):
            raise ValueError(f"permutation {self.perm} does not fit {src!r} of shape {src.shape}")
        self.shape = tuple(src.shape[p] for p in self.perm)

    def _src_index(self, index: Index) -> Index:
        out: list = [None] * len(index)
        for i, p in enumerate(self.perm):
            out[p] = index[i]
        return tuple(out)

    def read(self, index: Index) -> np.ndarray:
        return self.src.read(self._src_index(index)).transpose(self.perm)


class Expanded(_Unary):
    """`src[None, ..., None, :]` with `leading` unit axes in front."""

    def __init__(self, src: Lazy, leading: int):
        super().__init__(src)
        self.leading = leading
        self.shape = (1,) * leading + tuple(src.shape)

    def _src_index(self, index: Index) -> Index:
        return index[self.leading:]

    def read(self, index: Index) -> np.ndarray:
        if any(r != (0, 1) for r in index[:self.leading]):
            return np.zeros(tuple(b - a for a, b in index), self.dtype)  # empty block
        return self.src.read(self._src_index(index)).reshape(tuple(b - a for a, b in index))


class Rows(_Unary):
    """Rows [start, stop) of src's leading axis."""

    def __init__(self, src: Lazy, start: int, stop: int):
        super().__init__(src)
        self.start, self.stop = start, stop
        self.shape = (stop - start,) + tuple(src.shape[1:])

    def _src_index(self, index: Index) -> Index:
        (a, b), rest = index[0], index[1:]
        return ((a + self.start, b + self.start),) + tuple(rest)

    def read(self, index: Index) -> np.ndarray:
        return self.src.read(self._src_index(index))


class Concatenated(Lazy):
    """`np.concatenate(parts, axis)`; a block reads only the parts it overlaps."""

    def __init__(self, parts: Sequence[Lazy], axis: int = 0):
        self.parts, self.axis = list(parts), axis
        first = self.parts[0]
        for p in self.parts[1:]:
            if p.dtype != first.dtype or (p.shape[:axis] + p.shape[axis + 1:]
                                          != first.shape[:axis] + first.shape[axis + 1:]):
                raise ValueError(f"cannot concatenate {self.parts} along axis {axis}: "
                                 f"{[(x.shape, str(x.dtype)) for x in self.parts]}")
        self.dtype = first.dtype
        self.offsets = np.cumsum([0] + [p.shape[axis] for p in self.parts]).tolist()
        self.shape = first.shape[:axis] + (self.offsets[-1],) + first.shape[axis + 1:]

    def _pieces(self, index: Index):
        a, b = index[self.axis]
        for part, lo, hi in zip(self.parts, self.offsets[:-1], self.offsets[1:]):
            s, e = max(a, lo), min(b, hi)
            if s < e:
                sub = list(index)
                sub[self.axis] = (s - lo, e - lo)
                yield part, tuple(sub)

    def read(self, index: Index) -> np.ndarray:
        blocks = [part.read(sub) for part, sub in self._pieces(index)]
        if not blocks:
            return np.zeros(tuple(b - a for a, b in index), self.dtype)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=self.axis)

    def prefetch(self, index: Index) -> None:
        for part, sub in self._pieces(index):
            part.prefetch(sub)

    def release(self) -> None:
        for part in self.parts:
            part.release()


class Stacked(Lazy):
    """`np.stack(layers)`: a stacked block parameter (`models.stacking`) read from its
    per-layer checkpoint tensors; a block reads only the layers it spans."""

    def __init__(self, layers: Sequence[Lazy]):
        self.layers = list(layers)
        first = self.layers[0]
        for x in self.layers[1:]:
            if x.shape != first.shape or x.dtype != first.dtype:
                raise ValueError(f"cannot stack {self.layers}: "
                                 f"{[(y.shape, str(y.dtype)) for y in self.layers]}")
        self.dtype = first.dtype
        self.shape = (len(self.layers),) + tuple(first.shape)

    def read(self, index: Index) -> np.ndarray:
        (a, b), rest = index[0], tuple(index[1:])
        if a >= b:
            return np.zeros(tuple(hi - lo for lo, hi in index), self.dtype)
        return np.stack([self.layers[i].read(rest) for i in range(a, b)])

    def prefetch(self, index: Index) -> None:
        (a, b), rest = index[0], tuple(index[1:])
        for i in range(a, b):
            self.layers[i].prefetch(rest)

    def release(self) -> None:
        for x in self.layers:
            x.release()


@dataclasses.dataclass(frozen=True)
class Rule:
    """Our parameter `ours` ("/"-joined path) = checkpoint tensors `theirs`, concatenated along
    the checkpoint's leading (output-feature) axis, laid out per `kind` (see `KINDS`).

    swap_halves: the two halves of the leading axis are stored in the opposite order
    (diffusers' AdaLayerNormContinuous (scale, shift) vs BFL's (shift, scale)).
    sizes: leading-axis length of each part of `theirs` (needed by `export` when there are
    several; checked against the checkpoint on load).
    """

    ours: str
    theirs: tuple[str, ...]
    kind: str = "copy"
    swap_halves: bool = False
    sizes: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.ours}: kind {self.kind!r} not in {sorted(KINDS)}")
        if isinstance(self.theirs, str):
            object.__setattr__(self, "theirs", (self.theirs,))

    def lazy(self, ckpt: Mapping[str, TensorInfo]) -> Lazy:
        parts = [Stored(ckpt[name]) for name in self.theirs]
        if self.sizes is not None and tuple(p.shape[0] for p in parts) != tuple(self.sizes):
            raise ValueError(f"{self.ours}: checkpoint tensors {self.theirs} have leading sizes "
                             f"{[p.shape[0] for p in parts]}, expected {list(self.sizes)}")
        x = parts[0] if len(parts) == 1 else Concatenated(parts, 0)
        if self.swap_halves:
            half = x.shape[0] // 2
            x = Concatenated([Rows(x, half, x.shape[0]), Rows(x, 0, half)], 0)
        perm, leading = KINDS[self.kind]
        if perm:
            x = Transposed(x, perm)
        return Expanded(x, leading) if leading else x

    def export(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """Our array -> {checkpoint name: array in the checkpoint's layout}."""
        perm, leading = KINDS[self.kind]
        x = np.asarray(array)
        if leading:
            x = x.reshape(x.shape[leading:])
        if perm:
            x = x.transpose(np.argsort(perm))
        if self.swap_halves:
            half = x.shape[0] // 2
            x = np.concatenate([x[half:], x[:half]], axis=0)
        if len(self.theirs) == 1:
            return {self.theirs[0]: x}
        sizes = self.sizes or (x.shape[0] // len(self.theirs),) * len(self.theirs)
        if sum(sizes) != x.shape[0]:
            raise ValueError(f"{self.ours}: cannot split {x.shape[0]} rows into {sizes}")
        bounds = np.cumsum((0,) + tuple(sizes))
        return {name: x[a:b] for name, a, b in zip(self.theirs, bounds[:-1], bounds[1:])}

    def export_shapes(self, shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Checkpoint shapes of `export` for our shape (without touching data)."""
        perm, leading = KINDS[self.kind]
        shape = tuple(shape)[leading:]
        if perm:
            shape = tuple(shape[i] for i in np.argsort(perm))
        n = len(self.theirs)
        sizes = self.sizes or (shape[0] // n,) * n
        return {name: (s,) + shape[1:] for name, s in zip(self.theirs, sizes)}
