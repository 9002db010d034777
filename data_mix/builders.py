"""Example builders: record + rng -> example, one per task.

An example (docs/contracts.md "Examples") is `{"image": uint8 (H,W,3) or absent, "prompt": str,
"target": uint8 (H,W,3), "task": str, "meta": dict}`. Builders encode targets with the task
codecs (`tasks.get(name)`), render a prompt in a random phrasing that states what the decoder
needs (colors, colormap, background), and keep that spec in `meta["spec"]` (JSON-able) so
evaluation can decode without parsing the prompt. They do no geometry: the mixture has already
brought the record to its final size (`transforms.prepare`).

    ex = build("semantic", record, np.random.default_rng(0), subset_prob=0.3)

Colors are drawn from one fixed palette per builder call (`semantic.palette(palette_size)`,
far apart and from black) in a random order, so the class -> color assignment changes from
example to example (the model must read it from the prompt) while every pair of colors stays
decodable. Palettes are cached per process; a fixed size keeps that to one computation.

`FIELDS` / `select_fields` say which record fields each builder reads (the mixture drops the
rest before the geometry); `data_mix.degradations.degrade` makes the restoration inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

import tasks

# Also re-exported: `builders.degrade` / `builders.DEGRADATIONS` predate `data_mix.degradations`.
from data_mix.degradations import DEGRADATIONS, degrade

Record = dict[str, Any]
Example = dict[str, Any]
BLACK = (0, 0, 0)
AUGMENT_COLORMAPS = ("plasma", "inferno", "viridis", "gray")


def build_depth(record: Record, rng: np.random.Generator, *, colormap_prob: float = 0.2,
                colormaps: tuple[str, ...] = AUGMENT_COLORMAPS, max_invalid: float = 0.5) -> Example:
    """Metric depth: the rainbow cube path, or with `colormap_prob` one of `colormaps` (named in
    the prompt). NaN (invalid) and +inf (sky) are passed to the codec, which documents them
    (invalid -> black, sky -> white).

    The generator learns every pixel of its target, and the codec paints missing depth black
    (0 m): a record with more than `max_invalid` of its pixels NaN (sparse LiDAR, large holes)
    is refused (ValueError; a bad record to the mixture). Train depth on dense sources.
    """
    depth = np.asarray(_field(record, "depth"))
    _check_invalid(record, "depth", np.isnan(depth), max_invalid)
    codec = tasks.get("depth")
    cmap = "rainbow" if rng.random() >= colormap_prob else str(colormaps[int(rng.integers(len(colormaps)))])
    target = codec.encode(depth, colormap=cmap)
    prompt = codec.render_prompt(rng, colormap=cmap)
    return _example(record, "depth", prompt, target, {"colormap": cmap})


def build_normals(record: Record, rng: np.random.Generator, *, max_invalid: float = 0.5) -> Example:
    """Surface normals (x right, y up, z toward the camera); 0-vectors are invalid pixels
    (the codec paints them mid-gray). Records more than `max_invalid` invalid are refused,
    as for depth."""
    normals = _field(record, "normals")
    codec = tasks.get("normals")
    _check_invalid(record, "normals", ~codec.valid_mask(normals), max_invalid)
    return _example(record, "normals", codec.render_prompt(rng), codec.encode(normals), {})


def build_semantic(record: Record, rng: np.random.Generator, *, subset_prob: float = 0.3,
                   absent_prob: float = 0.2, background_prob: float = 0.5,
                   palette_size: int = 24, fixed_colors: bool = False) -> Example:
    """Semantic segmentation with a random class -> color assignment stated in the prompt.

    Names every class present, or (`subset_prob`) a random subset of them with the rest
    painted as background; with `absent_prob` one class of `classes` not in view is named too
    (nothing may be painted in its color). Unnamed and ignored (-1) pixels are background:
    black, or (`background_prob`) a palette color, always stated when not black.
    fixed_colors: instead, name every class of `classes` in its own order with the fixed color
    `semantic.palette(len(classes))[class index]` over black (a simplification for tiny CPU
    demos, whose models cannot learn to read a random mapping in minutes; `subset_prob`,
    `absent_prob`, `background_prob` and `palette_size` are then unused).
    meta["spec"]: {"classes", "colors" (k, 3), "background", "class_indices"}.
    """
    labels = _field(record, "semantic")
    classes = list(_field(record, "classes"))
    if fixed_colors:
        return _semantic_fixed(record, rng, labels, classes)
    present = _present(labels, len(classes))
    if len(present) > 1 and rng.random() < subset_prob:
        k = int(rng.integers(1, len(present)))
        named = sorted(rng.choice(present, size=k, replace=False).tolist())
    else:
        named = list(present)
    absent = [c for c in range(len(classes)) if c not in present]
    if absent and (not named or rng.random() < absent_prob):
        named.append(int(rng.choice(absent)))
    order = rng.permutation(len(named))
    named = [named[i] for i in order]
    codec = tasks.get("semantic")
    colors, background = _pick_colors(codec, rng, len(named), background_prob, palette_size)
    lut = np.full(len(classes) + 1, -1, np.int32)  # last entry: the -1 (ignore) label
    lut[named] = np.arange(len(named))
    target = codec.encode(lut[labels], colors, background=background)
    names = [classes[c] for c in named]
    prompt = codec.render_prompt(rng, classes=names, colors=colors, background=background)
    spec = {"classes": names, "colors": colors.tolist(), "background": list(background),
            "class_indices": named}
    return _example(record, "semantic", prompt, target, spec)


def build_instance(record: Record, rng: np.random.Generator, *, background_prob: float = 0.3,
                   palette_size: int = 24, min_pixels: int = 4,
                   fixed_colors: bool = False, vocabulary: Sequence[str] = ()) -> Example:
    """Instance segmentation of one class: each instance its own random palette color.

    The class is drawn among those with an instance visible (masks under `min_pixels` pixels,
    e.g. cut by a crop, do not count); if a crop left none, a class of `instance_classes` is
    named with an all-background target (nothing to segment is a valid answer). A record
    without any instance (a scene whose objects are all hidden, a street with nobody in it)
    names a class of `vocabulary` the same way; with an empty vocabulary it is an error.
    fixed_colors: instead of random colors, the instances take the first colors of
    `semantic.palette(palette_size)` from left to right (by mask centroid column): a rule a
    tiny CPU demo model can learn in minutes, where "the model picks" a random one.
    meta["spec"]: {"target", "background", "instance_colors" (N, 3)}.
    """
    masks = np.asarray(_field(record, "instance_masks"), bool)
    names = list(_field(record, "instance_classes"))
    if len(names) != len(masks):
        raise ValueError(f"record {_rid(record)}: {len(masks)} instance masks but {len(names)} instance_classes")
    if not names and not vocabulary:
        raise ValueError(f"record {_rid(record)} has no instances; give the instance builder a "
                         f"`vocabulary` of class names to ask for in that case")
    visible = masks.sum((1, 2)) >= min_pixels
    pool = (sorted({n for n, v in zip(names, visible) if v}) or sorted(set(names))
            or sorted(set(vocabulary)))
    cls = str(pool[int(rng.integers(len(pool)))])
    chosen = masks[[i for i, (n, v) in enumerate(zip(names, visible)) if n == cls and v]].reshape(-1, *masks.shape[1:])
    codec = tasks.get("instance")
    colors, background = _pick_colors(codec, rng, len(chosen), background_prob, palette_size)
    if fixed_colors:
        colors = _left_to_right_colors(chosen, palette_size)
    target = codec.encode(chosen, colors, background=background)
    prompt = codec.render_prompt(rng, cls, background=background)
    spec = {"target": cls, "background": list(background), "instance_colors": colors.tolist()}
    return _example(record, "instance", prompt, target, spec)


def build_referring(record: Record, rng: np.random.Generator, *, max_targets: int = 3,
                    background_prob: float = 0.5, palette_size: int = 24, min_pixels: int = 4) -> Example:
    """Referring segmentation: 1..max_targets referred objects, one random expression each,
    each painted in a stated color over a background.

    Objects cut below `min_pixels` by a crop are not chosen (relational expressions such as
    "the leftmost cone" can be wrong after a crop: configure referring sources without
    `crop_scale`). meta["spec"]: {"targets" [expr], "colors" (k, 3), "background"}.
    """
    objects = [o for o in _field(record, "referring")
               if o.get("expressions") and np.asarray(o["mask"]).sum() >= min_pixels]
    if not objects:
        raise ValueError(f"record {_rid(record)}: no referred object visible (>= {min_pixels} px) with "
                         "an expression")
    k = int(rng.integers(1, min(max_targets, len(objects)) + 1))
    picked = [objects[i] for i in rng.choice(len(objects), size=k, replace=False)]
    exprs = [str(o["expressions"][int(rng.integers(len(o["expressions"])))]) for o in picked]
    if len(set(exprs)) != len(exprs):  # two objects, same words: keep the first only
        keep = sorted({e: i for i, e in reversed(list(enumerate(exprs)))}.values())
        picked, exprs = [picked[i] for i in keep], [exprs[i] for i in keep]
    codec = tasks.get("referring")
    colors, background = _pick_colors(codec, rng, len(picked), background_prob, palette_size)
    masks = np.stack([np.asarray(o["mask"], bool) for o in picked])
    target = codec.encode(masks, colors, background=background)
    prompt = codec.render_prompt(rng, targets=exprs, colors=colors, background=background)
    spec = {"targets": exprs, "colors": colors.tolist(), "background": list(background)}
    return _example(record, "referring", prompt, target, spec)


def build_binary(record: Record, rng: np.random.Generator, *, min_pixels: int = 4) -> Example:
    """Binary mask ("generate a binary mask of the polyp"): white object on black.

    The object is `record["mask"]` named by `meta["mask_name"]` (medical-style sources), else a
    class present in `semantic`, else the union of the instances of one class.
    meta["spec"]: {"target"}.
    """
    if record.get("mask") is not None:
        mask = np.asarray(record["mask"], bool)
        name = (record.get("meta") or {}).get("mask_name")
        if not name:
            raise ValueError(f"record {_rid(record)} has a 'mask' but no meta['mask_name'] to name it")
    elif record.get("semantic") is not None:
        labels, classes = record["semantic"], list(_field(record, "classes"))
        present = _present(labels, len(classes), min_pixels)
        if not present:
            raise ValueError(f"record {_rid(record)}: no class covers {min_pixels} px for a binary mask")
        c = int(rng.choice(present))
        mask, name = labels == c, classes[c]
    elif record.get("instance_masks") is not None and len(record["instance_masks"]):
        names = list(_field(record, "instance_classes"))
        name = str(names[int(rng.integers(len(names)))])
        mask = np.asarray(record["instance_masks"], bool)[[n == name for n in names]].any(0)
    else:
        raise ValueError(f"record {_rid(record)} has no mask, semantic or instance_masks for a binary target")
    codec = tasks.get("binary")
    return _example(record, "binary", codec.render_prompt(rng, target=name), codec.encode(mask), {"target": name})


def build_restoration(record: Record, rng: np.random.Generator, *,
                      kinds: tuple[str, ...] = DEGRADATIONS) -> Example:
    """Restoration: the input is the record's image degraded (`degrade`), the target is the
    clean image; the prompt asks for that kind of restoration. Haze uses the record's depth.

    A real pair (a record with `target` and meta["kind"], e.g. `RestorationPairsSource`:
    Rain100L input / ground truth) is used as it is: input = image, target = target, prompt for
    its kind; nothing is degraded again.
    meta["spec"]: {"kind", "params"} (+ "scale" for super-resolution).
    """
    codec = tasks.get("restoration")
    if record.get("target") is not None:
        kind = (record.get("meta") or {}).get("kind")
        if kind not in codec.KINDS:
            raise ValueError(f"record {_rid(record)} is a restoration pair with meta kind "
                             f"{kind!r}; expected one of {codec.KINDS} (e.g. "
                             f"RestorationPairsSource(root, kind='derain'))")
        prompt = codec.render_prompt(rng, kind=kind)
        example = _example(record, "restoration", prompt, codec.encode(record["target"]),
                           {"kind": kind, "params": {"source": "real pair"}})
        example["image"] = _field(record, "image")
        return example
    clean = _field(record, "image")
    kind = str(kinds[int(rng.integers(len(kinds)))])
    degraded, params = degrade(kind, clean, rng, depth=record.get("depth"))
    scale = params.get("scale")
    prompt = codec.render_prompt(rng, kind=kind, scale=scale)
    spec = {"kind": kind, "params": params} | ({"scale": scale} if scale else {})
    example = _example(record, "restoration", prompt, codec.encode(clean), spec)
    example["image"] = degraded
    return example


def build_generation(record: Record, rng: np.random.Generator) -> Example:
    """Generation records pass through: text-to-image (`prompt`, `target`) and edits (+ `image`).

    A photo record with only a `caption` becomes text-to-image with the photo as target.
    """
    del rng
    if "target" in record and "prompt" in record:
        example = {"prompt": str(record["prompt"]), "target": record["target"]}
        if record.get("image") is not None:
            example["image"] = record["image"]
    elif "caption" in record and record.get("image") is not None:
        example = {"prompt": str(record["caption"]), "target": record["image"]}
    else:
        raise ValueError(f"record {_rid(record)} has neither prompt+target nor caption+image "
                         f"(keys {sorted(record)}); the generation builder needs one")
    return {**example, "task": "generation", "meta": dict(record.get("meta") or {})}


BUILDERS: dict[str, Callable[..., Example]] = {
    "depth": build_depth,
    "normals": build_normals,
    "semantic": build_semantic,
    "instance": build_instance,
    "referring": build_referring,
    "binary": build_binary,
    "restoration": build_restoration,
    "generation": build_generation,
}


# Record fields each builder reads ("meta" always kept). The mixture drops the others before
# the geometry, so a semantic example does not crop, flip and resize a stack of instance masks.
FIELDS: dict[str, tuple[str, ...]] = {
    "depth": ("image", "depth"),
    "normals": ("image", "normals"),
    "semantic": ("image", "semantic", "classes"),
    "instance": ("image", "instance_masks", "instance_classes"),
    "referring": ("image", "referring"),
    "binary": ("image", "mask", "semantic", "classes", "instance_masks", "instance_classes"),
    "restoration": ("image", "depth"),
    "generation": ("image", "target", "prompt", "caption"),
}


def select_fields(task: str, record: Record) -> Record:
    """The part of `record` that the `task` builder reads (plus meta); unknown task: all of it."""
    keep = FIELDS.get(task)
    if keep is None:
        return record
    return {k: v for k, v in record.items() if k in keep or k == "meta"}


def names() -> list[str]:
    """Tasks with a builder (the codec names plus `generation`)."""
    return sorted(BUILDERS)


def build(task: str, record: Record, rng: np.random.Generator, **options) -> Example:
    """The example of `task` made from `record` (options go to that task's builder)."""
    try:
        fn = BUILDERS[task]
    except KeyError:
        raise KeyError(f"no builder for task {task!r}; known: {names()}") from None
    return fn(record, rng, **options)


# ---------------------------------------------------------------------------------------------

def _pick_colors(codec, rng: np.random.Generator, k: int, background_prob: float,
                 palette_size: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """k distinct palette colors (uint8 (k, 3), random order) and a background: black, or with
    `background_prob` one more palette color. One palette size per call keeps the cache small."""
    semantic = tasks.get("semantic")
    size = palette_size if k + 1 <= palette_size else int(np.ceil((k + 1) / 16) * 16)
    pal = semantic.palette(size)  # far from black and from each other
    pick = rng.choice(size, size=k + 1, replace=False)
    colors = pal[pick[:k]]
    background = tuple(int(v) for v in pal[pick[k]]) if rng.random() < background_prob else BLACK
    return colors, background


def _semantic_fixed(record: Record, rng: np.random.Generator, labels: np.ndarray,
                    classes: list[str]) -> Example:
    """`build_semantic(fixed_colors=True)`: every class named, in order, in its fixed color,
    over black."""
    _present(labels, len(classes))  # validates the label range
    codec = tasks.get("semantic")
    colors = codec.palette(len(classes))
    target = codec.encode(np.asarray(labels), colors, background=BLACK)
    prompt = codec.render_prompt(rng, classes=classes, colors=colors, background=BLACK)
    spec = {"classes": classes, "colors": colors.tolist(), "background": list(BLACK),
            "class_indices": list(range(len(classes)))}
    return _example(record, "semantic", prompt, target, spec)


def _left_to_right_colors(masks: np.ndarray, palette_size: int) -> np.ndarray:
    """uint8 (N, 3): `semantic.palette(max(palette_size, N))` colors 0..N-1 given to bool
    (N, H, W) masks in the order of their centroid columns (ties: mask order)."""
    n = len(masks)
    pal = tasks.get("semantic").palette(max(int(palette_size), n))
    if not n:
        return pal[:0]
    cols = np.arange(masks.shape[-1], dtype=np.float64)
    area = np.maximum(masks.sum((1, 2)), 1)
    centroid = (masks.sum(1) * cols).sum(1) / area
    colors = np.empty((n, 3), np.uint8)
    colors[np.argsort(centroid, kind="stable")] = pal[:n]
    return colors


def _check_invalid(record: Record, key: str, invalid: np.ndarray, max_invalid: float) -> None:
    frac = float(invalid.mean()) if invalid.size else 1.0
    if frac > max_invalid:
        raise ValueError(f"record {_rid(record)}: {frac:.0%} of {key!r} is invalid (> max_invalid="
                         f"{max_invalid:.0%}); too sparse for a {key} training target")


def _present(labels: np.ndarray, num_classes: int, min_pixels: int = 1) -> list[int]:
    """Class indices with >= min_pixels pixels (a bincount: several times faster than unique)."""
    lab = np.asarray(labels).ravel()
    if lab.size and (lab.min() < -1 or lab.max() >= num_classes):
        raise ValueError(f"semantic labels span {int(lab.min())}..{int(lab.max())}; expected -1..{num_classes - 1}")
    counts = np.bincount(lab + 1, minlength=num_classes + 1)[1:]
    return np.flatnonzero(counts >= min_pixels).tolist()


def _example(record: Record, task: str, prompt: str, target: np.ndarray, spec: dict) -> Example:
    example = {"prompt": prompt, "target": target, "task": task,
               "meta": {**(record.get("meta") or {}), "spec": spec}}
    if record.get("image") is not None:
        example["image"] = record["image"]
    return example


def _field(record: Record, key: str):
    if record.get(key) is None:
        raise ValueError(f"record {_rid(record)} lacks {key!r} (keys {sorted(record)})")
    return record[key]


def _rid(record: Record) -> str:
    meta = record.get("meta") or {}
    return f"{meta.get('dataset', '?')}/{meta.get('id', '?')}"
