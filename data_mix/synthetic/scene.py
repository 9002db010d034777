"""Scene description and sampling: a room, a pinhole camera, a light, 1-6 primitives.

World frame (metres): y up, the floor is the plane y = 0, the room spans
x in [-width/2, width/2], z in [-depth, 0], y in [0, height]; the camera stands near the open
front (z close to 0) and looks toward -z, into the room. A scene is a tree of frozen
dataclasses holding only Python scalars and tuples, so it is cheap to copy, edit with
`dataclasses.replace`, pickle, and summarize as JSON (`describe`). Sampling is a pure
function of a `np.random.Generator`; the sources seed it from (seed, split, source, index).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_mix.synthetic import palette

KINDS = ("sphere", "box", "cylinder", "cone", "torus")
TEXTURES = ("plain", "checker", "stripes", "noise")

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Texture:
    """A procedural surface pattern for floor, walls or ceiling.

    kind: one of TEXTURES. colors / rgb: the two color names (keys of ROOM_COLORS) and their
    sRGB values; "plain" uses only the first. scale: period of checker tiles / stripes and the
    feature size of noise, metres. angle: rotation of the pattern in its plane, degrees.
    seed: lattice seed of the noise pattern.
    """

    kind: str
    colors: tuple[str, str]
    rgb: tuple[RGB, RGB]
    scale: float
    angle: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Room:
    """An axis-aligned box open at the front (z = 0); without a ceiling the top shows sky."""

    width: float
    depth: float
    height: float
    has_ceiling: bool
    floor: Texture
    walls: Texture
    ceiling: Texture


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera. yaw: degrees, positive turns right (toward +x); pitch: degrees,
    positive looks up; hfov: horizontal field of view, degrees. No roll."""

    position: tuple[float, float, float]
    yaw: float
    pitch: float
    hfov: float

    def axes(self) -> tuple[tuple[float, float, float], ...]:
        """(right, up, backward) unit vectors in world coordinates: the camera's x, y, z axes
        (the Vision Banana camera frame). Pure Python, cheap enough for sampling loops."""
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        right = (cy, 0.0, sy)
        up = (-sy * sp, cp, cy * sp)  # right x forward
        back = (-sy * cp, -sp, cy * cp)
        return right, up, back

    def rotation(self) -> np.ndarray:
        """float64 (3, 3) world-from-camera rotation; columns are `axes()`."""
        return np.array(self.axes()).T

    def intrinsics(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels for an image of `size` = (H, W), OpenCV convention:
        pixel (row v, column u) has its center at (u, v), so cx = (W - 1) / 2. Square pixels;
        hfov spans the full width (edge to edge)."""
        h, w = size
        fx = (w / 2.0) / math.tan(math.radians(self.hfov) / 2.0)
        return fx, fx, (w - 1) / 2.0, (h - 1) / 2.0


@dataclasses.dataclass(frozen=True)
class Light:
    """A point light (or a disk area light of `radius` metres when soft shadows are on).

    color: linear RGB multiplier; intensity: scale of the direct term; falloff: distance in
    metres at which the direct term halves (1 / (1 + (d / falloff)^2)); ambient: the
    shadow-independent term, a fraction of albedo.
    """

    position: tuple[float, float, float]
    color: tuple[float, float, float]
    intensity: float
    falloff: float
    ambient: float
    radius: float


@dataclasses.dataclass(frozen=True)
class Primitive:
    """An object resting on the floor, base centered at (x, 0, z).

    dims by kind (metres): sphere (radius,), box (half_x, half_y, half_z) before yaw,
    cylinder (radius, height), cone (base radius, height; apex up), torus (major radius,
    minor radius; lying flat, axis vertical). yaw: degrees about the vertical axis (boxes).
    color: a key of OBJECT_COLORS; rgb: its sRGB value. specular: Blinn-Phong weight.
    """

    kind: str
    x: float
    z: float
    dims: tuple[float, ...]
    yaw: float
    color: str
    rgb: RGB
    specular: float

    @property
    def height(self) -> float:
        """Top of the object above the floor, metres."""
        d = self.dims
        if self.kind in ("cylinder", "cone"):
            return d[1]
        return 2 * (d[0] if self.kind == "sphere" else d[1])

    @property
    def footprint_radius(self) -> float:
        """Radius of a vertical cylinder around the center that contains the object, metres."""
        d = self.dims
        if self.kind == "box":
            return math.hypot(d[0], d[2])
        if self.kind == "torus":
            return d[0] + d[1]
        return d[0]

    def bounding_sphere(self) -> tuple[tuple[float, float, float], float]:
        """(center, radius) of a sphere containing the object (ray culling)."""
        h = self.height
        return (self.x, h / 2, self.z), math.hypot(self.footprint_radius, h / 2) * 1.001

    @property
    def size_word(self) -> str:
        """"small", "large" or "" from the bounding radius, for captions."""
        r = self.bounding_sphere()[1]
        return "small" if r < 0.4 else "large" if r > 0.75 else ""


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything needed to render: room, camera, light, objects, sensor noise.

    noise_std: Gaussian sensor noise in 8-bit levels; noise_seed seeds it, so a scene and its
    edited version get the same noise pattern.
    """

    room: Room
    camera: Camera
    light: Light
    objects: tuple[Primitive, ...]
    noise_std: float
    noise_seed: int


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, items):
    """One of `items` (a sequence). Faster than rng.choice, which builds an array."""
    return items[int(rng.integers(len(items)))]


def sample_texture(rng: np.random.Generator, kinds: tuple[str, ...] = TEXTURES) -> Texture:
    """A random room texture; plain surfaces get one color, patterns a high-contrast pair."""
    kind = _pick(rng, kinds)
    if kind == "plain":
        a = _pick(rng, tuple(palette.ROOM_COLORS))
        colors = (a, a)
    else:
        pair = _pick(rng, palette.TEXTURE_COLOR_PAIRS)
        colors = pair if rng.random() < 0.5 else pair[::-1]
    rgb = tuple(palette.ROOM_COLORS[c] for c in colors)
    scale = _u(rng, 0.3, 1.2) if kind != "noise" else _u(rng, 0.25, 1.5)
    angle = _pick(rng, (0.0, 45.0, 90.0, _u(rng, 0, 180)))
    return Texture(kind, colors, rgb, scale, angle, int(rng.integers(2**31)))


def _sample_room(rng: np.random.Generator) -> Room:
    return Room(width=_u(rng, 5.0, 12.0), depth=_u(rng, 9.0, 19.0), height=_u(rng, 2.8, 4.5),
                has_ceiling=bool(rng.random() < 0.6), floor=sample_texture(rng),
                walls=sample_texture(rng), ceiling=sample_texture(rng, ("plain",)))


def _sample_camera(rng: np.random.Generator, room: Room) -> Camera:
    pos = (_u(rng, -0.25, 0.25) * room.width, _u(rng, 0.7, min(2.2, room.height - 0.4)),
           _u(rng, -2.0, -0.3))
    return Camera(pos, yaw=_u(rng, -20, 20), pitch=_u(rng, -32, -3), hfov=_u(rng, 45, 80))


def sample_primitive(rng: np.random.Generator, kind: str, x: float, z: float) -> Primitive:
    """A primitive of `kind` with random size, color and finish, based at (x, 0, z)."""
    def u(lo: float, hi: float) -> float:
        return _u(rng, lo, hi)

    yaw = 0.0
    if kind == "sphere":
        dims = (u(0.2, 0.65),)
    elif kind == "box":
        dims = (u(0.15, 0.6), u(0.15, 0.65), u(0.15, 0.6))
        yaw = 0.0 if rng.random() < 0.4 else u(-45, 45)
    elif kind == "cylinder":
        dims = (u(0.15, 0.5), u(0.3, 1.5))
    elif kind == "cone":
        dims = (u(0.2, 0.55), u(0.4, 1.4))
    elif kind == "torus":
        major = u(0.3, 0.6)
        dims = (major, u(0.2, 0.45) * major)  # tube thick enough for the chord sampling
    else:
        raise ValueError(f"unknown primitive kind {kind!r}; expected one of {KINDS}")
    color = _pick(rng, tuple(palette.OBJECT_COLORS))
    return Primitive(kind, x, z, dims, yaw, color, palette.OBJECT_COLORS[color],
                     specular=u(0.0, 0.5))


def _angular_radius(radius: float, dist: float) -> float:
    return math.asin(min(1.0, radius / dist))


def placement_ok(prim: Primitive, others: tuple[Primitive, ...] | list[Primitive], room: Room,
                 camera: Camera) -> bool:
    """Whether `prim` fits: inside the room, clear of the camera and of `others`, in front of
    the camera, not filling the view, and not hiding (or hidden behind) another object."""
    fr = prim.footprint_radius
    if abs(prim.x) > room.width / 2 - fr - 0.1 or not -room.depth + fr + 0.1 < prim.z < -0.1 - fr:
        return False
    cx, cy, cz = camera.position
    if math.hypot(prim.x - cx, prim.z - cz) < fr + 0.6:
        return False
    (px, py, pz), radius = prim.bounding_sphere()
    rel = (px - cx, py - cy, pz - cz)
    dist = math.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
    back = camera.axes()[2]
    ang = _angular_radius(radius, dist)
    if -(rel[0] * back[0] + rel[1] * back[1] + rel[2] * back[2]) < 0.5 or \
            ang > 0.3 * math.radians(camera.hfov):
        return False
    for o in others:
        if math.hypot(prim.x - o.x, prim.z - o.z) < fr + o.footprint_radius + 0.1:
            return False
        (ox, oy, oz), orad = o.bounding_sphere()
        orel = (ox - cx, oy - cy, oz - cz)
        odist = math.sqrt(orel[0] ** 2 + orel[1] ** 2 + orel[2] ** 2)
        # Angular separation of the two bounding discs as seen from the camera: partial
        # occlusion is fine (and realistic), a disc mostly covering the other is not.
        cosang = (rel[0] * orel[0] + rel[1] * orel[1] + rel[2] * orel[2]) / (dist * odist)
        sep = math.acos(max(-1.0, min(1.0, cosang)))
        if sep < 0.6 * (ang + _angular_radius(orad, odist)):
            return False
    return True


def _floor_point_in_view(rng: np.random.Generator, camera: Camera, axes,
                         min_dist: float) -> tuple[float, float] | None:
    """A floor point seen at a random spot of the lower image (square aspect assumed), at a
    horizontal distance from the camera in [min_dist, 10] metres; None if the draw misses.
    Scalar Python: for one point, cheaper than any numpy call sequence."""
    t = math.tan(math.radians(camera.hfov) / 2)
    sx, sy = rng.uniform(-0.75, 0.75) * t, rng.uniform(-0.9, 0.25) * t
    right, up, back = axes
    dx = right[0] * sx + up[0] * sy - back[0]
    dy = right[1] * sx + up[1] * sy - back[1]
    dz = right[2] * sx + up[2] * sy - back[2]
    if dy >= -1e-3:
        return None
    s = -camera.position[1] / dy
    if not min_dist <= s * math.hypot(dx, dz) <= 10.0:
        return None
    return camera.position[0] + s * dx, camera.position[2] + s * dz


def _place_objects(rng: np.random.Generator, room: Room, camera: Camera, n: int,
                   kinds: tuple[str, ...]) -> tuple[Primitive, ...]:
    objects: list[Primitive] = []
    axes = camera.axes()
    max_ang = 0.3 * math.radians(camera.hfov)
    for _ in range(n):
        # Shape, size and color first, then look for a free floor spot in view for it among
        # spots not too close for it (placement_ok would reject those).
        proto = sample_primitive(rng, _pick(rng, kinds), 0.0, 0.0)
        radius = proto.bounding_sphere()[1]
        dy = proto.height / 2 - camera.position[1]
        too_big = max(0.0, (radius / math.sin(max_ang)) ** 2 - dy * dy)
        min_dist = max(proto.footprint_radius + 0.6, math.sqrt(too_big))
        for _attempt in range(25):
            spot = _floor_point_in_view(rng, camera, axes, min_dist)
            if spot is None:
                continue
            prim = Primitive(proto.kind, spot[0], spot[1], proto.dims, proto.yaw, proto.color,
                             proto.rgb, proto.specular)
            if placement_ok(prim, objects, room, camera):
                objects.append(prim)
                break
    if not objects:
        # Rare (a large object in a narrow room): fall back to a small sphere straight
        # ahead, which always fits since rooms are at least 9 m deep and 5 m wide.
        yaw = math.radians(camera.yaw)
        x = camera.position[0] + 3.0 * math.sin(yaw)
        z = camera.position[2] - 3.0 * math.cos(yaw)
        x = max(-room.width / 2 + 0.5, min(room.width / 2 - 0.5, x))
        objects.append(dataclasses.replace(sample_primitive(rng, "sphere", x, z), dims=(0.3,)))
    return tuple(objects)


def _sample_light(rng: np.random.Generator, room: Room, objects: tuple[Primitive, ...]) -> Light:
    top = max(o.height for o in objects)
    lo = max(2.2, top + 0.4)
    y = _u(rng, lo, room.height - 0.2) if room.has_ceiling else _u(rng, max(3.0, lo), 7.0)
    # The light stays inside the room's x/z extent: walls then never shadow (the room is
    # convex), so shadow rays only test the objects.
    pos = (_u(rng, -0.4, 0.4) * room.width, y, _u(rng, -0.8, -0.05) * room.depth)
    warmth = _u(rng, -1, 1)
    color = (1.0 + 0.06 * warmth, 1.0, 1.0 - 0.12 * warmth)
    return Light(pos, color, intensity=_u(rng, 0.9, 1.4), falloff=_u(rng, 5.0, 12.0),
                 ambient=_u(rng, 0.12, 0.3), radius=_u(rng, 0.15, 0.5))


def sample_scene(rng: np.random.Generator, *, max_objects: int = 6,
                 kinds: tuple[str, ...] = KINDS) -> Scene:
    """A random scene with 1..max_objects primitives of `kinds`, all visible from the camera.

    Deterministic given the generator state (seed it with np.random.default_rng([...])).
    """
    if not 1 <= max_objects <= 12:
        raise ValueError(f"max_objects={max_objects}; expected 1..12")
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds={kinds!r}; expected a non-empty subset of {KINDS}")
    room = _sample_room(rng)
    camera = _sample_camera(rng, room)
    objects = _place_objects(rng, room, camera, int(rng.integers(1, max_objects + 1)),
                             tuple(kinds))
    light = _sample_light(rng, room, objects)
    return Scene(room, camera, light, objects, noise_std=_u(rng, 0.0, 2.0),
                 noise_seed=int(rng.integers(2**31)))


def _texture_dict(tex: Texture) -> dict:
    return {"kind": tex.kind, "colors": list(tex.colors), "scale": tex.scale, "angle": tex.angle}


def describe(scene: Scene) -> dict:
    """A JSON-able summary of the room, camera and light (objects are listed separately by
    the sources). Built by hand: `dataclasses.asdict` costs a millisecond per record."""
    room, cam, light = scene.room, scene.camera, scene.light
    return {
        "room": {"width": room.width, "depth": room.depth, "height": room.height,
                 "has_ceiling": room.has_ceiling, "floor": _texture_dict(room.floor),
                 "walls": _texture_dict(room.walls), "ceiling": _texture_dict(room.ceiling)},
        "camera": {"position": list(cam.position), "yaw": cam.yaw, "pitch": cam.pitch,
                   "hfov": cam.hfov},
        "light": {"position": list(light.position), "radius": light.radius},
        "noise_std": scene.noise_std,
    }
