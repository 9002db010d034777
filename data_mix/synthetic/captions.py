"""Words for scenes: captions, referring expressions and object phrases.

Everything here reads a `Scene` plus what the render showed (`Visibility`: which objects
have pixels, where they appear), so a caption never names an object the image does not show
and a referring expression is unique among the visible objects. Phrasings are drawn from a
`np.random.Generator`, so they are deterministic per record.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_mix.synthetic import raycast
from data_mix.synthetic.scene import Primitive, Scene, Texture

NOUNS = {"sphere": ("sphere", "ball"), "box": ("box", "block"), "cylinder": ("cylinder",),
         "cone": ("cone",), "torus": ("torus", "ring", "donut")}
PLURAL = {"box": "boxes", "torus": "tori", "block": "blocks"}
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclasses.dataclass(frozen=True)
class Visibility:
    """What a render shows of each object (index k = scene.objects[k]).

    pixels: visible pixel count; x: horizontal image position of the visible centroid in
    [-1, 1] (left to right); depth: mean z-depth of its pixels, metres (inf if unseen).
    """

    pixels: tuple[int, ...]
    x: tuple[float, ...]
    depth: tuple[float, ...]

    @classmethod
    def from_render(cls, masks: np.ndarray, depth: np.ndarray) -> Visibility:
        """From bool (K, H, W) object masks and the float32 (H, W) depth map."""
        k, h, w = masks.shape
        flat = masks.reshape(k, h * w)
        pixels = flat.sum(axis=1)
        denom = np.maximum(pixels, 1)
        xs = masks.sum(axis=1) @ np.linspace(-1.0, 1.0, w) / denom
        # Mean rather than median depth: one matrix product for all objects.
        ds = flat @ np.where(np.isfinite(depth), depth, 0).ravel().astype(np.float64) / denom
        return cls(tuple(int(p) for p in pixels), tuple(float(x) for x in xs),
                   tuple(float(d) if p else math.inf for d, p in zip(ds, pixels)))

    def visible(self, min_pixels: int = 1) -> list[int]:
        """Indices of the objects with at least min_pixels pixels, left to right."""
        idx = [i for i, p in enumerate(self.pixels) if p >= min_pixels]
        return sorted(idx, key=lambda i: self.x[i])


def _plural(noun: str) -> str:
    return PLURAL.get(noun, noun + "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun(prim: Primitive, rng: np.random.Generator | None = None) -> str:
    """The object's noun: canonical, or a synonym drawn from rng ("ball" for a sphere)."""
    names = NOUNS[prim.kind]
    if prim.kind == "box" and max(prim.dims) - min(prim.dims) < 0.08:
        names = names + ("cube",)
    return names[0] if rng is None else names[int(rng.integers(len(names)))]


def object_phrase(prim: Primitive, rng: np.random.Generator | None = None,
                  size: bool = True) -> str:
    """"a small red sphere": article, optional size word, color, noun."""
    words = [w for w in ((prim.size_word if size else ""), prim.color, noun(prim, rng)) if w]
    text = " ".join(words)
    return f"{_article(text)} {text}"


def position_word(x: float) -> str:
    """"on the left" / "in the middle" / "on the right" from an image x in [-1, 1]."""
    return "on the left" if x < -0.33 else "on the right" if x > 0.33 else "in the middle"


def texture_phrase(tex: Texture, surface: str, rng: np.random.Generator) -> str:
    """"a white and black checkered floor", "gray walls", "a mottled beige and brown floor"."""
    a, b = tex.colors
    plural = surface.endswith("s")
    if tex.kind == "plain":
        text = f"{a} {surface}"
    else:
        adjective = {"checker": ("checkered", "checkerboard", "tiled"),
                     "stripes": ("striped",), "noise": ("mottled", "marbled", "speckled")}[
            tex.kind]
        adj = adjective[int(rng.integers(len(adjective)))]
        text = f"{adj} {surface}" if rng.random() < 0.35 else f"{a} and {b} {adj} {surface}"
    return text if plural else f"{_article(text)} {text}"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def list_objects(scene: Scene, order: list[int], rng: np.random.Generator) -> str:
    """"two red spheres, a blue box and a small green cone": visible objects left to right,
    identical (color, kind) objects counted together."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i in order:
        prim = scene.objects[i]
        groups.setdefault((prim.color, prim.kind), []).append(i)
    parts = []
    for (color, _kind), members in groups.items():
        prim = scene.objects[members[0]]
        if len(members) == 1:
            parts.append(object_phrase(prim, rng))
        else:
            parts.append(f"{_NUMBERS[len(members)]} {color} {_plural(noun(prim))}")
    return _join(parts)


def room_surfaces_shown(surface: np.ndarray, min_fraction: float = 0.01) -> frozenset[str]:
    """Which of "floor", "walls", "ceiling", "sky" cover at least min_fraction of a render's
    surface-id map (int (H, W)), so captions only name what the image shows."""
    counts = np.bincount(surface.ravel(), minlength=raycast.OBJECT0)[:raycast.OBJECT0]
    walls = counts[raycast.BACK] + counts[raycast.LEFT] + counts[raycast.RIGHT]
    area = {"sky": counts[raycast.SKY], "floor": counts[raycast.FLOOR], "walls": walls,
            "ceiling": counts[raycast.CEILING]}
    return frozenset(k for k, v in area.items() if v >= min_fraction * surface.size)


def caption(scene: Scene, vis: Visibility, rng: np.random.Generator, min_pixels: int = 1,
            shown: frozenset[str] = frozenset({"floor", "walls"})) -> str:
    """A one-sentence description of the rendered scene, in a random phrasing.

    shown: the room surfaces the image shows (`room_surfaces_shown`); others are not named.
    Objects with fewer than min_pixels pixels are left out (at 64 px a far object may be a
    few pixels: naming it would teach the generator to draw what it cannot see).
    """
    order = vis.visible(min_pixels)
    floor = texture_phrase(scene.room.floor, "floor", rng) if "floor" in shown else ""
    walls = ""
    if "walls" in shown:
        walls = texture_phrase(scene.room.walls, "walls" if rng.random() < 0.5 else "wall", rng)
    top = ""
    if "sky" in shown:
        top = " under a blue sky"
    elif "ceiling" in shown and rng.random() < 0.3:
        color = scene.room.ceiling.colors[0]
        top = f" under {_article(color)} {color} ceiling"
    if not (floor and walls):
        # A view of the floor alone (or of the walls alone, or of neither): name what shows.
        where = f" with {floor or walls}" if floor or walls else ""
        if not order:
            return f"an empty room{where}{top}"
        return f"{list_objects(scene, order, rng)} in a room{where}{top}"
    if not order:
        return f"an empty room with {floor} and {walls}{top}"
    objs = list_objects(scene, order, rng)
    templates = (
        "{objs} on {floor} in front of {walls}{top}",
        "a room with {walls} and {floor}{top}, containing {objs}",
        "{objs} standing on {floor}, with {walls} behind{top}",
        "a 3D render of {objs} in a room with {floor} and {walls}{top}",
        "{objs} in a room with {walls}{top}",
        "{objs} on {floor}{top}",
    )
    text = templates[int(rng.integers(len(templates)))].format(
        objs=objs, floor=floor, walls=walls, top=top)
    return text


def _attributes(scene: Scene, vis: Visibility, i: int) -> dict[str, str]:
    prim = scene.objects[i]
    return {"kind": prim.kind, "color": prim.color, "size": prim.size_word,
            "position": position_word(vis.x[i])}


def referring_expressions(scene: Scene, vis: Visibility, i: int,
                          min_pixels: int = 1) -> list[str]:
    """Expressions that pick out visible object i alone among the visible objects.

    ["the red sphere", "the sphere on the left", "the leftmost sphere", ...]; empty when
    nothing short is unique (two identical objects side by side with nothing to tell
    them apart).
    """
    order = vis.visible(min_pixels)
    if i not in order:
        return []
    attrs = {j: _attributes(scene, vis, j) for j in order}
    me = attrs[i]
    name = NOUNS[me["kind"]][0]
    out = []
    # Attribute sets from shortest to longest; an expression is kept if exactly one visible
    # object matches all of its attributes.
    for keys in (("kind",), ("color", "kind"), ("size", "kind"), ("kind", "position"),
                 ("size", "color", "kind"), ("color", "kind", "position")):
        if any(not me[k] for k in keys):
            continue
        matches = [j for j in order if all(attrs[j][k] == me[k] for k in keys)]
        if matches == [i]:
            words = [me[k] for k in ("size", "color") if k in keys] + [name]
            text = "the " + " ".join(words)
            if "position" in keys:
                text += " " + me["position"]
            out.append(text)
    same = [j for j in order if attrs[j]["kind"] == me["kind"]]
    if len(same) >= 2:
        if i == same[0]:
            out.append(f"the leftmost {name}")
        if i == same[-1]:
            out.append(f"the rightmost {name}")
        near = sorted(same, key=lambda j: vis.depth[j])
        if i == near[0] and vis.depth[near[1]] > 1.2 * vis.depth[i]:
            out.append(f"the nearest {name}")
        if i == near[-1] and vis.depth[near[-2]] < vis.depth[i] / 1.2:
            out.append(f"the farthest {name}")
    return out
