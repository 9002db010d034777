"""Random-access sources of synthetic records (the embedded default data; no download).

Three sources over the same scene generator (see docs/contracts.md for the record format):

    SyntheticScenes       perception records: image, depth, normals, semantic, instances,
                          referring expressions, caption, meta
    SyntheticTextToImage  generation records: prompt (a caption phrasing) -> target image
    SyntheticEdits        generation records: image + edit instruction -> target image

Record i of a source is a pure function of (seed, split, source stream, i): the scene comes
from np.random.default_rng([seed, SPLITS[split], STREAM, i]), so records are reproducible,
the splits never share a scene, and the three sources draw different scenes. Sources hold
only their arguments: construction is free and pickling (grain worker processes) is cheap.
"""

from __future__ import annotations

import operator

import numpy as np

from data_mix.synthetic import captions, edits, render
from data_mix.synthetic.scene import KINDS, Scene, describe, sample_scene

SPLITS = {"train": 0, "test": 1, "validation": 2}
# Extra rng streams per record, so phrasing draws do not shift the scene's draws.
_STREAM_WORDS, _STREAM_EDIT = 101, 102

_T2I_PROMPTS = ("{c}", "{c}", "an image of {c}", "a 3D rendering of {c}", "render {c}",
                "generate an image of {c}", "a picture showing {c}")


def _size(size) -> tuple[int, int]:
    try:
        size = (operator.index(size),) * 2
    except TypeError:
        pass
    try:
        h, w = (operator.index(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size={size!r}; expected an int or a pair (H, W) of ints") from None
    if h < 8 or w < 8:
        raise ValueError(f"size={size!r}; expected H, W >= 8")
    return h, w


class _Base:
    """Shared arguments and indexing of the synthetic sources.

    Args:
      seed: base seed; with split, index and the source's stream it fixes each record.
      size: output (H, W) in pixels, or an int for square images.
      num_records: length of the source (records are generated on the fly).
      split: "train", "test" or "validation"; each split draws disjoint rng streams.
      antialias: k x k supersampling of edge pixels (1 = off); labels are never blended.
      shadow_samples: points sampled on the area light (1 = hard shadows).
      noise: add the scene's mild Gaussian sensor noise (0-2 levels).
      max_objects, kinds: at most this many primitives (1..12), of these kinds.
      min_caption_pixels: objects smaller than this (pixels) are not named in text
        (default: 0.1% of the image, at least 4).
    """

    name = "synthetic"
    _STREAM = 0

    def __init__(self, seed: int = 0, size=(256, 256), num_records: int = 10_000,
                 split: str = "train", *, antialias: int = 2, shadow_samples: int = 1,
                 noise: bool = True, max_objects: int = 6, kinds: tuple[str, ...] = KINDS,
                 min_caption_pixels: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {sorted(SPLITS)}")
        if num_records < 0:
            raise ValueError(f"num_records={num_records}; expected >= 0")
        self.seed = int(seed)
        self.size = _size(size)
        self.num_records = int(num_records)
        self.split = split
        self.render_args = {"antialias": int(antialias), "shadow_samples": int(shadow_samples),
                            "noise": bool(noise)}
        if int(antialias) < 1 or int(shadow_samples) < 1:
            raise ValueError(f"antialias={antialias}, shadow_samples={shadow_samples}; "
                             "expected both >= 1")
        self.max_objects = int(max_objects)
        self.kinds = tuple(kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds or not 1 <= self.max_objects <= 12:
            raise ValueError(f"kinds={kinds!r}, max_objects={max_objects}; expected a "
                             f"non-empty subset of {KINDS} and 1..12 objects")
        h, w = self.size
        self.min_caption_pixels = (max(4, h * w // 1000) if min_caption_pixels is None
                                   else int(min_caption_pixels))

    def __len__(self) -> int:
        return self.num_records

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(seed={self.seed}, size={self.size}, "
                f"num_records={self.num_records}, split={self.split!r})")

    def _index(self, i) -> int:
        i = operator.index(i)
        if i < 0:
            i += self.num_records
        if not 0 <= i < self.num_records:
            raise IndexError(f"index {i} out of range for {self!r}")
        return i

    def rng(self, i: int, stream: int = 0) -> np.random.Generator:
        """The generator of record i (stream 0: the scene; others: words, edits)."""
        entropy = [self.seed, SPLITS[self.split], self._STREAM, i]
        return np.random.default_rng(entropy + ([stream] if stream else []))

    def scene(self, i: int) -> Scene:
        """The scene of record i."""
        return sample_scene(self.rng(self._index(i)), max_objects=self.max_objects,
                            kinds=self.kinds)

    def _meta(self, i: int, scene: Scene, vis: captions.Visibility) -> dict:
        fx, fy, cx, cy = scene.camera.intrinsics(self.size)
        objects = []
        for k, prim in enumerate(scene.objects):
            objects.append({"kind": prim.kind, "color": prim.color, "size": prim.size_word,
                            "position": [prim.x, 0.0, prim.z], "dims": list(prim.dims),
                            "yaw": prim.yaw, "pixels": vis.pixels[k]})
        return {"dataset": "synthetic", "id": f"synthetic/{self.split}/{self.seed}/"
                f"{type(self).__name__}/{i}", "seed": self.seed, "index": i,
                "split": self.split, "size": list(self.size),
                "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
                "objects": objects, **describe(scene)}


class SyntheticScenes(_Base):
    """Perception records with exact labels (the contract's record keys).

    image uint8 (H, W, 3); depth float32 (H, W) metric z-depth in metres, +inf on sky;
    normals float32 (H, W, 3) unit, camera frame x right / y up / z toward the camera, zero
    on sky; semantic int32 (H, W) into classes (render.CLASSES, fixed for all records);
    instance_masks bool (N, H, W) for the visible objects (the pixels whose nearest hit is
    that object), instance_classes list[str]; referring: [{"expressions", "mask"}] for the
    visible objects that a short expression singles out; caption str; meta dict.
    """

    _STREAM = 0

    def __getitem__(self, i) -> dict:
        i = self._index(i)
        scene = self.scene(i)
        view = render.render(scene, self.size, **self.render_args)
        masks = view.object_masks(len(scene.objects))
        vis = captions.Visibility.from_render(masks, view.depth)
        words = self.rng(i, _STREAM_WORDS)
        shown = [k for k in range(len(scene.objects)) if vis.pixels[k] > 0]
        referring = []
        for k in vis.visible(self.min_caption_pixels):
            expr = captions.referring_expressions(scene, vis, k, self.min_caption_pixels)
            if expr:
                referring.append({"expressions": expr, "mask": masks[k]})
        meta = self._meta(i, scene, vis)
        for k, obj in enumerate(meta["objects"]):
            obj["instance"] = shown.index(k) if k in shown else -1
        return {
            "image": view.image, "depth": view.depth, "normals": view.normals,
            "semantic": view.semantic(scene), "classes": list(render.CLASSES),
            "instance_masks": masks[shown],
            "instance_classes": [scene.objects[k].kind for k in shown],
            "referring": referring,
            "caption": captions.caption(scene, vis, words, self.min_caption_pixels,
                                        captions.room_surfaces_shown(view.surface)),
            "meta": meta,
        }


class SyntheticTextToImage(_Base):
    """Text-to-image records: prompt (a phrasing of the caption) -> target (the render).

    Keys: prompt str, target uint8 (H, W, 3), caption str, meta dict. No `image`.
    """

    name = "synthetic_text_to_image"
    _STREAM = 1

    def __getitem__(self, i) -> dict:
        i = self._index(i)
        scene = self.scene(i)
        view = render.render(scene, self.size, **self.render_args)
        vis = captions.Visibility.from_render(view.object_masks(len(scene.objects)), view.depth)
        words = self.rng(i, _STREAM_WORDS)
        text = captions.caption(scene, vis, words, self.min_caption_pixels,
                                captions.room_surfaces_shown(view.surface))
        prompt = _T2I_PROMPTS[int(words.integers(len(_T2I_PROMPTS)))].format(c=text)
        return {"prompt": prompt, "target": view.image, "caption": text,
                "meta": self._meta(i, scene, vis)}


class SyntheticEdits(_Base):
    """Instruction-edit records: image (scene) + prompt (instruction) -> target (edited).

    Both images share camera, light and noise; see `edits` for the kinds. Keys: image,
    prompt, target (uint8 (H, W, 3)), meta (with meta["edit"]: kind, target object, details).
    min_edit_pixels: smallest visible size of an object an instruction may refer to.
    """

    name = "synthetic_edits"
    _STREAM = 2

    def __init__(self, *args, min_edit_pixels: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        h, w = self.size
        self.min_edit_pixels = (max(12, h * w // 200) if min_edit_pixels is None
                                else int(min_edit_pixels))

    def __getitem__(self, i) -> dict:
        i = self._index(i)
        scene = self.scene(i)
        view = render.render(scene, self.size, **self.render_args)
        vis = captions.Visibility.from_render(view.object_masks(len(scene.objects)), view.depth)
        edit = edits.sample_edit(self.rng(i, _STREAM_EDIT), scene, vis, self.size,
                                 self.min_edit_pixels)
        # The sampled scene is one side of the pair (the "after" for additions).
        if edit.after is scene:
            before = render.render(edit.before, self.size, **self.render_args).image
            after = view.image
        else:
            before = view.image
            after = render.render(edit.after, self.size, **self.render_args).image
        meta = self._meta(i, scene, vis)
        # meta["objects"], "room", "camera" describe the sampled scene: the "after" side for
        # additions, the "before" side otherwise.
        meta["edit"] = {"kind": edit.kind, "target": edit.target,
                        "sampled": "after" if edit.after is scene else "before", **edit.details}
        return {"image": before, "prompt": edit.instruction, "target": after, "meta": meta}
