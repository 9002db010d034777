"""Edit pairs for the generation share: an instruction and the scene before and after it.

Both scenes keep the camera, the light and the sensor-noise seed, so re-rendering them gives
a consistent pair: a recolor changes only the object's pixels, a removal reveals the
rendered background (and drops the object's shadow), a move or an added object brings its
own shading and shadow. Kinds: recolor, remove, add, move, floor (new floor texture), walls.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_mix.synthetic import captions, palette
from data_mix.synthetic.captions import Visibility
from data_mix.synthetic.scene import Scene, placement_ok, sample_texture

EDIT_KINDS = ("recolor", "remove", "add", "move", "floor", "walls")
_WEIGHTS = (0.28, 0.2, 0.15, 0.15, 0.11, 0.11)

_RECOLOR = ("make {ref} {color}", "change the color of {ref} to {color}", "paint {ref} {color}",
            "turn {ref} {color}", "recolor {ref} {color}")
_REMOVE = ("remove {ref}", "delete {ref}", "take away {ref}", "get rid of {ref}",
           "erase {ref} from the scene")
_ADD = ("add {obj}{pos}", "put {obj} on the floor{pos}", "place {obj}{pos}", "insert {obj}{pos}")
_MOVE = {"left": ("move {ref} to the left", "slide {ref} to the left", "shift {ref} left"),
         "right": ("move {ref} to the right", "slide {ref} to the right", "shift {ref} right"),
         "closer": ("move {ref} closer to the camera", "bring {ref} closer", "pull {ref} forward"),
         "farther": ("move {ref} farther away", "push {ref} back", "move {ref} further back")}
_SURFACE = {
    "plain": ("make the {s} plain {a}", "paint the {s} {a}", "change the {s} to plain {a}"),
    "checker": ("change the {s} to a {a} and {b} checker pattern",
                "make the {s} {a} and {b} checkered",
                "give the {s} a {a} and {b} checkerboard pattern"),
    "stripes": ("make the {s} {a} and {b} striped", "give the {s} {a} and {b} stripes",
                "change the {s} to a {a} and {b} stripe pattern"),
    "noise": ("give the {s} a mottled {a} and {b} texture", "make the {s} {a} and {b} marbled",
              "change the {s} to a speckled {a} and {b} pattern"),
}


@dataclasses.dataclass(frozen=True)
class Edit:
    """An edit pair. target: the edited object's index (into `after.objects`, or into
    `before.objects` for a removal); None for floor / walls edits. details: JSON-able
    parameters (colors, texture, direction)."""

    kind: str
    instruction: str
    before: Scene
    after: Scene
    target: int | None
    details: dict


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _referable(scene: Scene, vis: Visibility, min_pixels: int) -> dict[int, list[str]]:
    out = {}
    for i in vis.visible(min_pixels):
        refs = captions.referring_expressions(scene, vis, i, min_pixels)
        if refs:
            out[i] = refs
    return out


def replace_object(scene: Scene, i: int, **changes) -> Scene:
    """`scene` with object i's fields changed (e.g. color=..., rgb=...); all else kept."""
    objs = list(scene.objects)
    objs[i] = dataclasses.replace(objs[i], **changes)
    return dataclasses.replace(scene, objects=tuple(objs))


def drop_object(scene: Scene, i: int) -> Scene:
    """`scene` without object i (later objects shift down one index)."""
    return dataclasses.replace(scene, objects=scene.objects[:i] + scene.objects[i + 1:])


def _recolor(rng, scene, vis, refs):
    i = _pick(rng, sorted(refs))
    old = scene.objects[i].color
    new = _pick(rng, [c for c in palette.OBJECT_COLORS if c != old])
    after = replace_object(scene, i, color=new, rgb=palette.OBJECT_COLORS[new])
    text = _pick(rng, _RECOLOR).format(ref=_pick(rng, refs[i]), color=new)
    return Edit("recolor", text, scene, after, i, {"from": old, "to": new})


def _remove(rng, scene, vis, refs):
    i = _pick(rng, sorted(refs))
    text = _pick(rng, _REMOVE).format(ref=_pick(rng, refs[i]))
    return Edit("remove", text, scene, drop_object(scene, i), i,
                {"object_kind": scene.objects[i].kind, "object_color": scene.objects[i].color})


def _add(rng, scene, vis, min_pixels):
    # The sampled scene is the result; the "before" scene lacks one of its visible objects.
    i = _pick(rng, vis.visible(min_pixels))
    prim = scene.objects[i]
    pos = " " + captions.position_word(vis.x[i]) if rng.random() < 0.6 else ""
    text = _pick(rng, _ADD).format(obj=captions.object_phrase(prim, rng), pos=pos)
    return Edit("add", text, drop_object(scene, i), scene, i,
                {"object_kind": prim.kind, "object_color": prim.color})


def _in_frame(scene: Scene, x: float, y: float, z: float, size: tuple[int, int]) -> bool:
    """Whether world point (x, y, z) projects inside the central 85% of the image."""
    right, up, back = scene.camera.axes()
    cx, cy, cz = scene.camera.position
    rel = (x - cx, y - cy, z - cz)
    depth = -sum(r * b for r, b in zip(rel, back))
    if depth < 0.5:
        return False
    fx, fy, ccx, ccy = scene.camera.intrinsics(size)
    u = fx * sum(r * a for r, a in zip(rel, right)) / depth
    v = fy * sum(r * a for r, a in zip(rel, up)) / depth
    return abs(u) < 0.85 * ccx and abs(v) < 0.85 * ccy


def _move(rng, scene, vis, refs, size):
    right, _, back = scene.camera.axes()
    # Horizontal unit vectors of the camera's right and forward directions on the floor.
    rn = math.hypot(right[0], right[2])
    fn = math.hypot(back[0], back[2])
    dirs = {"left": (-right[0] / rn, -right[2] / rn), "right": (right[0] / rn, right[2] / rn),
            "closer": (back[0] / fn, back[2] / fn), "farther": (-back[0] / fn, -back[2] / fn)}
    for i in rng.permutation(sorted(refs)):
        i = int(i)
        prim = scene.objects[i]
        others = scene.objects[:i] + scene.objects[i + 1:]
        for name in rng.permutation(list(dirs)):
            step = float(rng.uniform(0.6, 1.5))
            dx, dz = dirs[str(name)]
            moved = dataclasses.replace(prim, x=prim.x + step * dx, z=prim.z + step * dz)
            center = moved.bounding_sphere()[0]
            if placement_ok(moved, others, scene.room, scene.camera) and \
                    _in_frame(scene, *center, size):
                text = _pick(rng, _MOVE[str(name)]).format(ref=_pick(rng, refs[i]))
                after = replace_object(scene, i, x=moved.x, z=moved.z)
                return Edit("move", text, scene, after, i,
                            {"direction": str(name), "metres": step})
    return None


def _surface(rng, scene, which: str):
    old = getattr(scene.room, which)
    for _ in range(20):
        new = sample_texture(rng)
        if (new.kind, new.colors) != (old.kind, old.colors):
            break
    a, b = new.colors
    text = _pick(rng, _SURFACE[new.kind]).format(s=which, a=a, b=b)
    after = dataclasses.replace(scene, room=dataclasses.replace(scene.room, **{which: new}))
    return Edit(which, text, scene, after, None,
                {"texture": new.kind, "colors": list(new.colors)})


def sample_edit(rng: np.random.Generator, scene: Scene, vis: Visibility,
                size: tuple[int, int], min_pixels: int = 16) -> Edit:
    """A random edit of `scene`, as seen in a render of `size` (H, W) with visibility `vis`.

    Object edits only target objects with at least min_pixels visible pixels and a unique
    referring expression; when none qualifies (or no move fits) the edit falls back to the
    floor or the walls, which always exist.
    """
    refs = _referable(scene, vis, min_pixels)
    probs = np.asarray(_WEIGHTS)
    for _ in range(len(EDIT_KINDS)):
        kind = EDIT_KINDS[int(rng.choice(len(EDIT_KINDS), p=probs / probs.sum()))]
        edit = None
        if kind == "recolor" and refs:
            edit = _recolor(rng, scene, vis, refs)
        elif kind == "remove" and refs:
            edit = _remove(rng, scene, vis, refs)
        elif kind == "add" and vis.visible(min_pixels):
            edit = _add(rng, scene, vis, min_pixels)
        elif kind == "move" and refs:
            edit = _move(rng, scene, vis, refs, size)
        elif kind in ("floor", "walls"):
            edit = _surface(rng, scene, kind)
        if edit is not None:
            return edit
        probs[EDIT_KINDS.index(kind)] = 0.0
    return _surface(rng, scene, "floor")
