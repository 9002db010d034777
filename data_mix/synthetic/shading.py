"""Procedural textures and direct lighting (Lambert + ambient + Blinn-Phong, shadows).

All colors here are linear light, float32 (3, N). Textures are evaluated in world metres on
each room surface, so they stay put under any camera. Besides color, `shade` returns two
color-independent per-ray signals, the texture pattern weight and the shadow (lit) fraction;
the renderer anti-aliases where they (or the surface id) jump between neighboring pixels, so
recoloring an object never changes which pixels are supersampled.

Work is done on whole ray arrays with `np.where` rather than on gathered subsets wherever a
subset would be large: numpy's fancy-index gathers and scatters cost more than the math.
"""

from __future__ import annotations

import math

import numpy as np

from data_mix.synthetic import palette, raycast
from data_mix.synthetic.scene import Light, Scene, Texture

_SHININESS_SQUARINGS = 5  # Blinn-Phong exponent 2^5 = 32, by repeated squaring (no pow)
_SHADOW_NUDGE = 1e-3  # metres along the normal, so shadow rays do not hit their own surface

# Value-noise lattice: one fixed 256 x 256 table of hashed values; textures differ by an
# offset derived from their seed, so no table is built per render.
_NOISE_TABLE = np.random.default_rng(20260423).random(256 * 256).astype(np.float32)


def _value_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 2D value noise in [0, 1] at unit feature size, two octaves (float32 (N,))."""
    off = np.random.default_rng(seed).uniform(0, 256, 4)
    out = np.zeros(u.shape, np.float32)
    for octave, weight, (ou, ov) in ((1.0, 0.7, off[:2]), (2.7, 0.3, off[2:])):
        x, y = u * octave + ou, v * octave + ov
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = x - x0, y - y0
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep
        i, j = x0.astype(np.int32) & 255, y0.astype(np.int32) & 255
        i1, j1 = (i + 1) & 255, (j + 1) & 255
        i, i1 = i << 8, i1 << 8
        t = _NOISE_TABLE
        top = t.take(i | j) + (t.take(i1 | j) - t.take(i | j)) * fx
        bot = t.take(i | j1) + (t.take(i1 | j1) - t.take(i | j1)) * fx
        out += weight * (top + (bot - top) * fy)
    # Stretch contrast: the blend of lattice values clusters around 0.5.
    return np.clip((out - 0.5) * 2.2 + 0.5, 0.0, 1.0)


def pattern(tex: Texture, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float32 (N,) weight of the texture's second color at surface coordinates (u, v), m."""
    if tex.kind == "plain":
        return np.zeros(u.shape, np.float32)
    a = math.radians(tex.angle)
    ca, sa = math.cos(a) / tex.scale, math.sin(a) / tex.scale
    ru, rv = ca * u + sa * v, ca * v - sa * u
    if tex.kind == "checker":
        return ((np.floor(ru) + np.floor(rv)) % 2).astype(np.float32)
    if tex.kind == "stripes":
        return (np.floor(2 * ru) % 2).astype(np.float32)
    if tex.kind == "noise":
        return _value_noise(ru, rv, tex.seed)
    raise ValueError(f"unknown texture kind {tex.kind!r}; expected plain/checker/stripes/noise")


def albedo(scene: Scene, p: np.ndarray, sid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(linear albedo float32 (3, N), pattern weight float32 (N,)) at hit points p (3, N) of
    surfaces sid (N,). Floor uv = (x, z); back wall (x, y); side walls (z, y)."""
    room = scene.room
    table = np.zeros((raycast.OBJECT0 + len(scene.objects), 3), np.float32)
    table[raycast.FLOOR] = palette.to_linear(room.floor.rgb[0])
    table[[raycast.BACK, raycast.LEFT, raycast.RIGHT]] = palette.to_linear(room.walls.rgb[0])
    table[raycast.CEILING] = palette.to_linear(room.ceiling.rgb[0])
    for k, prim in enumerate(scene.objects):
        table[raycast.OBJECT0 + k] = palette.to_linear(prim.rgb)
    # One gather gives every ray its surface's first color; patterns blend in the second.
    alb = table.T.take(sid, axis=1)
    pat = np.zeros(sid.shape, np.float32)
    for tex, surface in ((room.floor, "floor"), (room.walls, "walls")):
        if tex.kind == "plain":
            continue
        if surface == "floor":
            on, u, v = sid == raycast.FLOOR, p[0], p[2]
        else:
            on = (sid >= raycast.BACK) & (sid <= raycast.RIGHT)
            u, v = np.where(sid == raycast.BACK, p[0], p[2]), p[1]
        if not on.any():
            continue
        w = np.where(on, pattern(tex, u, v), np.float32(0))
        c0, c1 = palette.to_linear(tex.rgb[0]), palette.to_linear(tex.rgb[1])
        alb += (c1 - c0)[:, None] * w
        pat += w
    return alb, pat


def light_points(light: Light, samples: int) -> np.ndarray:
    """float32 (3, S) points on the light: its center for S = 1, else a golden-angle spiral
    over a horizontal disk of the light's radius (fixed, so renders stay deterministic)."""
    if samples <= 1:
        return np.asarray(light.position, np.float32)[:, None]
    k = np.arange(samples) + 0.5
    r = light.radius * np.sqrt(k / samples)
    ang = k * math.pi * (3 - math.sqrt(5))
    off = np.stack([r * np.cos(ang), np.zeros(samples), r * np.sin(ang)])
    return (np.asarray(light.position)[:, None] + off).astype(np.float32)


def lit_fraction(scene: Scene, p: np.ndarray, n: np.ndarray, samples: int) -> np.ndarray:
    """float32 (N,) fraction of the light's sample points visible from points p (3, N) with
    normals n (3, N)."""
    light = scene.light
    o = p + np.float32(_SHADOW_NUDGE) * n
    lx, ly, lz = light.position
    w = np.stack([o[0] - lx, o[1] - ly, o[2] - lz])
    reach = np.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
    # Cull once for all light samples, from the light's center: a shadow ray toward another
    # sample point stays within the light's radius of the central one.
    inflate = light.radius if samples > 1 else 0.0
    cands = [raycast.cone_cull(prim, light.position, w, reach, inflate, reach=True)
             for prim in scene.objects]
    if not any(c.size for c in cands):
        return np.ones(p.shape[1], np.float32)
    lit = np.zeros(p.shape[1], np.float32)
    for q in light_points(light, samples).T:
        lit += ~raycast.occluded(scene.objects, o, q, candidates=cands)
    return lit * np.float32(1.0 / samples)


def sky(d: np.ndarray) -> np.ndarray:
    """Linear sky color float32 (3, N) for directions d (3, N): horizon haze to zenith."""
    w = np.clip(d[1] * (1.6 / np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])), 0, 1)
    lo, hi = palette.to_linear(palette.SKY_HORIZON), palette.to_linear(palette.SKY_ZENITH)
    return lo[:, None] + (hi - lo)[:, None] * w


def shade(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, sid: np.ndarray,
          shadow_samples: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shade traced rays.

    Args: o (3, N|1), d (3, N) float32 rays; t (N,), sid (N,) from `raycast.trace`.
    Returns (color float32 (3, N) linear; world normals float32 (3, N) facing the rays, zero
    on sky; pattern weight (N,); lit fraction (N,), 1 on sky and on faces turned away from
    the light, which are unlit by shading rather than shadowed).
    """
    light = scene.light
    is_sky = sid == raycast.SKY
    any_sky = bool(is_sky.any())
    # Sky rays get a placeholder distance so the math below stays finite; fixed at the end.
    p = o + (np.where(is_sky, np.float32(1), t) if any_sky else t) * d
    n = raycast.surface_normals(scene, p, sid, d)
    alb, pat = albedo(scene, p, sid)
    lx, ly, lz = light.position
    to_l = np.stack([lx - p[0], ly - p[1], lz - p[2]])
    dist2 = to_l[0] * to_l[0] + to_l[1] * to_l[1] + to_l[2] * to_l[2]
    to_l *= 1.0 / np.sqrt(dist2)
    ndotl = np.maximum(n[0] * to_l[0] + n[1] * to_l[1] + n[2] * to_l[2], np.float32(0))
    facing = ndotl > 0
    if scene.objects:
        lit = np.where(facing, lit_fraction(scene, p, n, shadow_samples), np.float32(1))
    else:
        lit = np.ones(sid.shape, np.float32)
    direct = (light.intensity * ndotl * lit) / (1.0 + dist2 * (1.0 / light.falloff**2))
    lcol = np.asarray(light.color, np.float32)[:, None]
    color = alb * (lcol * (light.ambient + direct))
    # Blinn-Phong highlight on objects only (walls and floor read as matte).
    obj = ((sid >= raycast.OBJECT0) & facing).nonzero()[0]
    if obj.size:
        spec = np.array([o_.specular for o_ in scene.objects], np.float32)
        dv, lv, nv = d.take(obj, axis=1), to_l.take(obj, axis=1), n.take(obj, axis=1)
        half = lv - dv / np.sqrt(dv[0] * dv[0] + dv[1] * dv[1] + dv[2] * dv[2])
        ndoth = np.maximum(nv[0] * half[0] + nv[1] * half[1] + nv[2] * half[2], 0)
        ndoth /= np.sqrt(half[0] * half[0] + half[1] * half[1] + half[2] * half[2])
        for _ in range(_SHININESS_SQUARINGS):
            ndoth *= ndoth
        hl = spec.take(sid.take(obj) - raycast.OBJECT0) * direct.take(obj) * ndoth
        for r in range(3):
            color[r, obj] += lcol[r, 0] * hl
    if any_sky:
        color = np.where(is_sky, sky(d), color)
        lit = np.where(is_sky, np.float32(1), lit)
    return color, n, pat, lit
