"""Self-checks of the renderer, shared by the tests and `benchmarks/synthetic.py`.

- `normals_from_depth`: normals of a z-depth map by back-projection and central differences,
  to compare with the analytic normals (the geometry and the two label maps must agree).
- `smooth_interior`: the pixels where such a comparison is meaningful.
- `footprints`: the pixels whose color can depend on one object (seen directly or through
  its shadow), to check that an edit changes nothing else.
"""

from __future__ import annotations

import numpy as np

from data_mix.synthetic import raycast, render, shading
from data_mix.synthetic.scene import Scene


def normals_from_depth(depth: np.ndarray, intrinsics) -> np.ndarray:
    """float64 (H, W, 3) unit normals of a z-depth map (float (H, W), metres) in the camera
    frame (x right, y up, z toward the camera), turned toward the camera.

    Pixel (v, u) back-projects to ((u - cx) / fx * D, -(v - cy) / fy * D, -D); the normal is
    the cross product of the central differences along u and v. Border pixels and non-finite
    depths give meaningless values: mask them (see `smooth_interior`).
    """
    fx, fy, cx, cy = intrinsics
    h, w = depth.shape
    depth = np.where(np.isfinite(depth), depth, 1.0).astype(np.float64)
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    pts = np.stack([(u - cx) / fx * depth, -(v - cy) / fy * depth, -depth], axis=-1)
    du = np.zeros_like(pts)
    dv = np.zeros_like(pts)
    du[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dv[1:-1] = pts[2:] - pts[:-2]
    n = np.cross(du, dv)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n[(n * -pts).sum(-1) < 0] *= -1
    return n


def smooth_interior(view: render.Rendering, max_turn_deg: float = 25.0) -> np.ndarray:
    """bool (H, W): non-sky pixels whose 3x3 neighborhood is one surface with analytic
    normals within max_turn_deg of the center's (drops box edges and cylinder rims, keeps
    curved faces) and that are not on the image border."""
    sid, n = view.surface, view.normals
    h, w = sid.shape
    c_sid, c_n = sid[1:-1, 1:-1], n[1:-1, 1:-1]
    ok = c_sid != raycast.SKY
    cos_min = np.cos(np.radians(max_turn_deg))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb_sid = sid[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
            nb_n = n[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
            ok &= (nb_sid == c_sid) & ((nb_n * c_n).sum(-1) > cos_min)
    out = np.zeros((h, w), bool)
    out[1:-1, 1:-1] = ok
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors a and b (..., 3)."""
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def footprints(scene: Scene, size: tuple[int, int], k: int, shadow_samples: int,
               antialias: int) -> tuple[np.ndarray, np.ndarray]:
    """(hit, shadow), bool (H, W) each: pixels where object k is the nearest surface, and
    pixels where it blocks a light sample, as seen from the pixel center or from any of the
    pixel's k x k anti-aliasing sub-samples (a cone tip or a thin shadow can fall between
    pixel centers). A recolor of object k can only change `hit` pixels; a removal only
    pixels within one pixel of `hit | shadow` (anti-aliasing flags look at neighbors)."""
    h, w = size
    offs = [0.0]
    if antialias > 1:
        offs += list((np.arange(antialias) + 0.5) / antialias - 0.5)
    hit = np.zeros(h * w, bool)
    shadow = np.zeros(h * w, bool)
    v, u = np.divmod(np.arange(h * w, dtype=np.float32), w)
    for oy in offs:
        for ox in offs:
            if (ox == 0.0) != (oy == 0.0):
                continue  # the center, or one of the k x k sub-samples
            o, d = render.camera_rays(scene.camera, size, u + ox, v + oy)
            t, sid = raycast.trace(scene, o, d)
            hit |= sid == raycast.OBJECT0 + k
            valid = sid != raycast.SKY
            p = o + np.where(valid, t, 1.0) * d
            p = p + 1e-3 * raycast.surface_normals(scene, p, sid, d)
            for q in shading.light_points(scene.light, shadow_samples).T:
                shadow |= valid & raycast.occluded([scene.objects[k]], p, q)
    return hit.reshape(h, w), shadow.reshape(h, w)


def dilate(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): mask grown by one pixel (3 x 3 neighborhood)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    grown = out.copy()
    out[:, 1:] |= grown[:, :-1]
    out[:, :-1] |= grown[:, 1:]
    return out
