"""Vectorized ray casting against the room and the primitives.

Rays are structure-of-arrays: origins `o` float32 (3, N) or (3, 1) (shared, e.g. the camera
center) and directions `d` float32 (3, N), NOT normalized: a hit is at o + t d. Primary rays
use camera-frame directions ((u - cx) / fx, -(v - cy) / fy, -1), so their t is the metric
z-depth directly. Every intersection is analytic (quadratics, slabs) except the torus, whose
quartic is bracketed by sampling and refined by regula falsi and Newton steps. Each primitive
first culls the rays against its bounding sphere, so the exact test runs only on the rays
that can hit it; the nearest hit over all surfaces wins.

Surface ids (int16): SKY, FLOOR, BACK, LEFT, RIGHT, CEILING, then OBJECT0 + k for object k.
"""

from __future__ import annotations

import math

import numpy as np

from data_mix.synthetic.scene import Primitive, Room, Scene

SKY, FLOOR, BACK, LEFT, RIGHT, CEILING = range(6)
OBJECT0 = 6
T_MIN = 1e-5  # smallest accepted hit distance (in units of |d|); rejects self-hits

_TORUS_GRID = np.linspace(0.0, 1.0, 24)  # chord samples that bracket the torus quartic
_TORUS_NEWTON = 2


def cull(prim: Primitive, o: np.ndarray, d: np.ndarray, t_max: np.ndarray | float) -> np.ndarray:
    """Indices (int64 (M,)) of the rays that meet `prim`'s bounding sphere before t_max.

    The general test for rays with their own origins; rays from one point use `cone_cull`.
    """
    (cx, cy, cz), r = prim.bounding_sphere()
    ocx, ocy, ocz = o[0] - cx, o[1] - cy, o[2] - cz
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = ocx * d[0] + ocy * d[1] + ocz * d[2]
    c = ocx * ocx + ocy * ocy + ocz * ocz - r * r
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0))
    # Far root beyond T_MIN (sphere not behind), near root before t_max (not hidden).
    ok = (disc > 0) & ((sq - b) > T_MIN * a) & ((-b - sq) < t_max * a)
    return ok.nonzero()[0]


def cone_cull(prim: Primitive, apex, dirs: np.ndarray, lengths: np.ndarray,
              inflate: float = 0.0, reach: bool = False) -> np.ndarray:
    """Indices of the rays from the point `apex` (3,) along `dirs` (3, N) (of norms
    `lengths` (N,)) that may meet the bounding sphere of `prim` grown by `inflate` metres.

    A dot product against the cone that encloses the sphere: a third of the work of `cull`.
    This is what keeps culling cheap for camera rays (one origin) and for shadow rays seen
    from the light (`dirs` = points - light). reach: also drop rays whose `lengths` end
    before the sphere starts (shadow rays from surfaces nearer the light than the object).
    """
    center, r = prim.bounding_sphere()
    r += inflate
    vx, vy, vz = center[0] - apex[0], center[1] - apex[1], center[2] - apex[2]
    dist = math.sqrt(vx * vx + vy * vy + vz * vz)
    if dist <= r:
        idx = np.arange(dirs.shape[1])
    else:
        s = math.sqrt(1.0 - (r / dist) ** 2) / dist  # cos(half-angle) / |v|
        dot = dirs[0] * vx + dirs[1] * vy + dirs[2] * vz
        idx = (dot > lengths * (s * dist * dist)).nonzero()[0]
    if reach and idx.size:
        idx = idx[lengths[idx] > dist - r]
    return idx


def _quadratic_roots(a, b, c):
    """The roots of a t^2 + 2 b t + c = 0 (half-b form) in a cancellation-free form; NaN or
    inf where there is no real root. The pair is not sorted."""
    disc = b * b - a * c
    q = -(b + np.copysign(np.sqrt(np.maximum(disc, 0)), b))
    q[disc < 0] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return q / a, c / q


def _nearest(t1, ok1, t2, ok2):
    """min of the valid roots beyond T_MIN (float32), inf where neither is valid."""
    t1 = np.where(ok1 & (t1 > T_MIN), t1, np.inf)
    t2 = np.where(ok2 & (t2 > T_MIN), t2, np.inf)
    return np.minimum(t1, t2)


def _sphere(prim, o, d):
    r = prim.dims[0]
    px, py, pz = o[0] - prim.x, o[1] - r, o[2] - prim.z
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = px * d[0] + py * d[1] + pz * d[2]
    c = px * px + py * py + pz * pz - r * r
    t1, t2 = _quadratic_roots(a, b, c)
    return _nearest(t1, True, t2, True)  # NaN compares False: misses drop out


def _yaw_cs(prim):
    y = math.radians(prim.yaw)
    return math.cos(y), math.sin(y)


def _box(prim, o, d):
    hx, hy, hz = prim.dims
    cs, sn = _yaw_cs(prim)
    px, py, pz = o[0] - prim.x, o[1] - hy, o[2] - prim.z
    # Into the box frame (inverse of the yaw rotation about +y), then the slab test.
    slabs = ((cs * px - sn * pz, cs * d[0] - sn * d[2], hx), (py, d[1], hy),
             (sn * px + cs * pz, sn * d[0] + cs * d[2], hz))
    tnear = tfar = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, dd, e in slabs:
            inv = 1.0 / dd  # +-inf for dd == 0: the slab then bounds nothing, as it should
            t1, t2 = (-e - p) * inv, (e - p) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            tnear = lo if tnear is None else np.maximum(tnear, lo)
            tfar = hi if tfar is None else np.minimum(tfar, hi)
    hit = tfar >= tnear
    return _nearest(tnear, hit, tfar, hit)


def _cylinder(prim, o, d):
    r, h = prim.dims
    px, pz = o[0] - prim.x, o[2] - prim.z
    a = d[0] * d[0] + d[2] * d[2]
    b = px * d[0] + pz * d[2]
    c = px * px + pz * pz - r * r
    t1, t2 = _quadratic_roots(a, b, c)
    # Side within the height, or the top cap. The bottom cap lies on the floor, unseen.
    y1, y2 = o[1] + t1 * d[1], o[1] + t2 * d[1]
    side = _nearest(t1, (y1 >= 0) & (y1 <= h), t2, (y2 >= 0) & (y2 <= h))
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (h - o[1]) / d[1]
    cx, cz = px + tc * d[0], pz + tc * d[2]
    cap = np.where((cx * cx + cz * cz <= r * r) & (tc > T_MIN), tc, np.inf)
    return np.minimum(side, cap)


def _cone(prim, o, d):
    r, h = prim.dims
    k2 = (r / h) ** 2
    px, py, pz = o[0] - prim.x, o[1] - h, o[2] - prim.z  # relative to the apex
    a = d[0] * d[0] + d[2] * d[2] - k2 * d[1] * d[1]
    b = px * d[0] + pz * d[2] - k2 * py * d[1]
    c = px * px + pz * pz - k2 * py * py
    t1, t2 = _quadratic_roots(a, b, c)
    # Both roots may be real on either nappe of the double cone: keep those on the real one.
    y1, y2 = py + t1 * d[1], py + t2 * d[1]
    return _nearest(t1, (y1 >= -h) & (y1 <= 0), t2, (y2 >= -h) & (y2 <= 0))


def _torus(prim, o, d):
    big, small = prim.dims
    # float64: the quartic cancels badly in float32 near the surface.
    o64, d64 = o.astype(np.float64), d.astype(np.float64)
    px, py, pz = o64[0] - prim.x, o64[1] - small, o64[2] - prim.z
    dx, dy, dz = d64
    a = dx * dx + dy * dy + dz * dz
    b = px * dx + py * dy + pz * dz
    t1, t2 = _quadratic_roots(a, b, px * px + py * py + pz * pz - (big + small) ** 2)
    # fmin / fmax skip NaN: rays that miss the torus's sphere get an empty chord.
    t0 = np.fmax(np.fmin(t1, t2), T_MIN)
    span = np.fmax(np.fmax(t1, t2) - t0, 0.0)
    # Restart the rays at the bounding-sphere entry, so the quartic in the new parameter
    # s = t - t0 has small, well-conditioned coefficients.
    px, py, pz = px + t0 * dx, py + t0 * dy, pz + t0 * dz
    b = 2.0 * (px * dx + py * dy + pz * dz)
    c = px * px + py * py + pz * pz + (big * big - small * small)
    four_r2 = 4.0 * big * big
    c4, c3 = a * a, 2.0 * a * b
    c2 = b * b + 2.0 * a * c - four_r2 * (dx * dx + dz * dz)
    c1 = 2.0 * b * c - 2.0 * four_r2 * (px * dx + pz * dz)
    c0 = c * c - four_r2 * (px * px + pz * pz)
    # Sample the chord and bracket the first sign change (inside the tube the quartic < 0).
    ss = span[:, None] * _TORUS_GRID[None, :]
    f = (((c4[:, None] * ss + c3[:, None]) * ss + c2[:, None]) * ss + c1[:, None]) * ss \
        + c0[:, None]
    inside = f < 0
    hit = inside.any(axis=1) & (span > 0)
    n = _TORUS_GRID.size
    flat = np.arange(span.size) * n + np.argmax(inside, axis=1)
    prev = np.maximum(flat - 1, flat - flat % n)
    lo, hi = ss.take(prev), ss.take(flat)
    flo, fhi = f.take(prev), f.take(flat)
    # Regula falsi inside the bracket, then Newton steps kept inside it.
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(fhi != flo, lo - flo * (hi - lo) / (fhi - flo), lo)
        for _ in range(_TORUS_NEWTON):
            fx = (((c4 * x + c3) * x + c2) * x + c1) * x + c0
            dfx = ((4.0 * c4 * x + 3.0 * c3) * x + 2.0 * c2) * x + c1
            x = np.clip(x - fx / dfx, lo, hi)
    return np.where(hit, t0 + x, np.inf)


_KERNELS = {"sphere": _sphere, "box": _box, "cylinder": _cylinder, "cone": _cone,
            "torus": _torus}


def hit_distance(prim: Primitive, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """float32 (N,) nearest t > T_MIN where the rays meet `prim`, inf where they miss."""
    kernel = _KERNELS.get(prim.kind)
    if kernel is None:
        raise ValueError(f"unknown primitive kind {prim.kind!r}; expected one of {tuple(_KERNELS)}")
    return kernel(prim, o, d).astype(np.float32, copy=False)


def room_exit(room: Room, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t float32 (N,), surface id int16 (N,)) where rays from inside leave the room box.

    The room is convex and the rays start inside, so the exit is the nearest of the planes
    the ray heads toward. Leaving through the open front, or the top without a ceiling, is SKY.
    """
    top_id = CEILING if room.has_ceiling else SKY
    planes = ((1, 0.0, room.height, FLOOR, top_id),
              (0, -room.width / 2, room.width / 2, LEFT, RIGHT), (2, -room.depth, 0.0, BACK, SKY))
    t = sid = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, lo, hi, lo_id, hi_id in planes:
            neg = d[axis] < 0
            ta = np.where(neg, lo - o[axis], hi - o[axis]) / d[axis]
            ids = np.where(neg, np.int16(lo_id), np.int16(hi_id))
            if t is None:
                t, sid = ta, ids
            else:
                closer = ta < t
                t = np.where(closer, ta, t)
                sid = np.where(closer, ids, sid)
    t[sid == SKY] = np.inf
    return t.astype(np.float32, copy=False), sid


def trace(scene: Scene, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of each ray: (t float32 (N,), surface id int16 (N,)); t = inf for SKY."""
    t, sid = room_exit(scene.room, o, d)
    shared = o.shape[1] == 1
    if shared and scene.objects:
        lengths = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    for k, prim in enumerate(scene.objects):
        idx = cone_cull(prim, o[:, 0], d, lengths) if shared else cull(prim, o, d, t)
        if idx.size == 0:
            continue
        tk = hit_distance(prim, o if shared else o.take(idx, axis=1), d.take(idx, axis=1))
        closer = tk < t[idx]
        win = idx[closer]
        t[win] = tk[closer]
        sid[win] = OBJECT0 + k
    return t, sid


def occluded(objects, o: np.ndarray, q, candidates: list[np.ndarray] | None = None
             ) -> np.ndarray:
    """bool (N,): whether any of `objects` lies on the segments from points o (3, N) to the
    point q (3,) (shadow rays toward a light sample).

    Walls never block the light (it sits inside the convex room), so only objects are
    tested. candidates: per object, indices of the segments that may hit it (`cone_cull`
    from the light); by default each object culls with its bounding sphere.
    """
    blocked = np.zeros(o.shape[1], bool)
    q = np.asarray(q, np.float32)[:, None]
    for k, prim in enumerate(objects):
        idx = cull(prim, o, q - o, 1.0) if candidates is None else candidates[k]
        idx = idx[~blocked[idx]]
        if idx.size:
            os = o.take(idx, axis=1)
            blocked[idx[hit_distance(prim, os, q - os) < 1.0]] = True
    return blocked


def object_normals(prim: Primitive, p: np.ndarray) -> np.ndarray:
    """float32 (3, N) outward unit normals of `prim` at surface points p (3, N), world frame.

    Computed from the point alone: for boxes and cylinder caps the face is the one the point
    is closest to, which is exact for points on the surface.
    """
    x, y, z = p[0] - prim.x, p[1], p[2] - prim.z
    if prim.kind == "sphere":
        n = np.stack([x, y - prim.dims[0], z])
    elif prim.kind == "box":
        hx, hy, hz = prim.dims
        cs, sn = _yaw_cs(prim)
        lx, ly, lz = cs * x - sn * z, y - hy, sn * x + cs * z
        # Distance of the point to each pair of face planes; the nearest face wins.
        gaps = np.stack([np.abs(np.abs(lx) - hx), np.abs(np.abs(ly) - hy), np.abs(np.abs(lz) - hz)])
        axis = np.argmin(gaps, axis=0)
        nl = [np.where(axis == i, np.sign(v), 0.0) for i, v in enumerate((lx, ly, lz))]
        n = np.stack([cs * nl[0] + sn * nl[2], nl[1], -sn * nl[0] + cs * nl[2]])
    elif prim.kind == "cylinder":
        r, h = prim.dims
        rho = np.hypot(x, z)
        cap = np.abs(y - h) < np.abs(rho - r)
        n = np.stack([np.where(cap, 0.0, x), np.where(cap, 1.0, 0.0), np.where(cap, 0.0, z)])
    elif prim.kind == "cone":
        r, h = prim.dims
        n = np.stack([x, (r / h) ** 2 * (h - y), z])
    else:  # torus
        big, small = prim.dims
        rho = np.maximum(np.hypot(x, z), 1e-9)
        n = np.stack([x - big * x / rho, y - small, z - big * z / rho])
    norm = np.sqrt((n * n).sum(axis=0))
    return (n / np.maximum(norm, 1e-12)).astype(np.float32)


# Inward normals of the room surfaces, indexed by surface id (SKY gets a zero vector).
_ROOM_NORMALS = np.array([(0, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (-1, 0, 0), (0, -1, 0)],
                         np.float32).T


def surface_normals(scene: Scene, p: np.ndarray, sid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """float32 (3, N) unit world normals at hit points p of surfaces sid, turned to face the
    incoming rays d; zero vectors for SKY."""
    n = _ROOM_NORMALS.take(np.minimum(sid, OBJECT0 - 1), axis=1)
    for k, prim in enumerate(scene.objects):
        m = (sid == OBJECT0 + k).nonzero()[0]
        if m.size:
            nk = object_normals(prim, p.take(m, axis=1))
            for r in range(3):
                n[r, m] = nk[r]
    # Rays from outside always see outward normals; the flip guards grazing numerical cases.
    flip = (n[0] * d[0] + n[1] * d[1] + n[2] * d[2]) > 0
    if flip.any():
        n *= np.where(flip, -1.0, 1.0).astype(np.float32)
    return n
