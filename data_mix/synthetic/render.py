"""Render a scene at any resolution: image plus exact depth, normals and labels.

Labels (depth, normals, surface ids) come from one ray through each pixel center, so every
label map agrees with the others pixel for pixel. The image may be anti-aliased adaptively:
pixels where the surface id, the texture pattern or the shadow jumps between 4-neighbors are
re-shaded as the mean of k x k sub-pixel rays. Those signals do not depend on object colors,
so recoloring an object changes no pixel outside its (1-pixel dilated) footprint.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_mix.synthetic import palette, raycast, shading
from data_mix.synthetic.scene import KINDS, Camera, Scene

CLASSES: tuple[str, ...] = ("sky", "floor", "wall", "ceiling") + KINDS

# Surface id -> semantic class index (objects are filled in per scene).
_ROOM_CLASS = {raycast.SKY: 0, raycast.FLOOR: 1, raycast.BACK: 2, raycast.LEFT: 2,
               raycast.RIGHT: 2, raycast.CEILING: 3}


@dataclasses.dataclass
class Rendering:
    """One rendered view.

    image: uint8 (H, W, 3) sRGB. depth: float32 (H, W) metric z-depth (distance along the
    optical axis), metres; +inf on sky. normals: float32 (H, W, 3) unit normals in the camera
    frame (x right, y up, z toward the camera), facing the camera; zero on sky. surface:
    int16 (H, W) raycast surface id (SKY, FLOOR, ..., OBJECT0 + k).
    """

    image: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    surface: np.ndarray

    def semantic(self, scene: Scene) -> np.ndarray:
        """int32 (H, W) index into CLASSES."""
        lut = np.zeros(raycast.OBJECT0 + len(scene.objects), np.int32)
        for s, c in _ROOM_CLASS.items():
            lut[s] = c
        for k, prim in enumerate(scene.objects):
            lut[raycast.OBJECT0 + k] = CLASSES.index(prim.kind)
        return lut[self.surface]

    def object_masks(self, num_objects: int) -> np.ndarray:
        """bool (num_objects, H, W): mask k = pixels whose nearest hit is object k."""
        ids = raycast.OBJECT0 + np.arange(num_objects, dtype=np.int16)
        return self.surface[None] == ids[:, None, None]


def camera_rays(camera: Camera, size: tuple[int, int], u: np.ndarray | None = None,
                v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World rays (o float32 (3, 1), d float32 (3, N)) through image points (u, v), pixels.

    Without u, v: every pixel center, row-major (N = H * W). Direction scaled so that t is
    the z-depth: d = R @ ((u - cx) / fx, -(v - cy) / fy, -1).
    """
    h, w = size
    fx, fy, cx, cy = camera.intrinsics(size)
    if u is None:
        xs = ((np.arange(w, dtype=np.float32) - cx) / fx)[None, :]
        ys = (-(np.arange(h, dtype=np.float32) - cy) / fy)[:, None]
        xs, ys = np.broadcast_to(xs, (h, w)).ravel(), np.broadcast_to(ys, (h, w)).ravel()
    else:
        xs = ((u - cx) / fx).astype(np.float32)
        ys = (-(v - cy) / fy).astype(np.float32)
    rot = camera.rotation().astype(np.float32)
    d = rot[:, 0:1] * xs + rot[:, 1:2] * ys - rot[:, 2:3]
    return np.asarray(camera.position, np.float32)[:, None], d


def _edges(*maps: tuple[np.ndarray, float]) -> np.ndarray:
    """bool (H, W): pixels differing from a 4-neighbor by more than tol in any map."""
    flag = np.zeros(maps[0][0].shape, bool)
    for m, tol in maps:
        dx = np.abs(np.diff(m, axis=1).astype(np.float32)) > tol
        dy = np.abs(np.diff(m, axis=0).astype(np.float32)) > tol
        flag[:, 1:] |= dx
        flag[:, :-1] |= dx
        flag[1:] |= dy
        flag[:-1] |= dy
    return flag


def render(scene: Scene, size: tuple[int, int], *, antialias: int = 2,
           shadow_samples: int = 1, noise: bool = True) -> Rendering:
    """Ray-cast `scene` at `size` = (H, W).

    antialias: k for k x k supersampling of edge pixels (1 = off). shadow_samples: points on
    the area light (1 = hard shadows). noise: add the scene's Gaussian sensor noise.
    """
    h, w = (int(s) for s in size)
    if h < 2 or w < 2 or antialias < 1 or shadow_samples < 1:
        raise ValueError(f"size={size}, antialias={antialias}, shadow_samples={shadow_samples};"
                         " expected H, W >= 2 and antialias, shadow_samples >= 1")
    o, d = camera_rays(scene.camera, (h, w))
    t, sid = raycast.trace(scene, o, d)
    color, n_world, pat, lit = shading.shade(scene, o, d, t, sid, shadow_samples)
    if antialias > 1:
        flag = _edges((sid.reshape(h, w), 0.5), (pat.reshape(h, w), 0.3),
                      (lit.reshape(h, w), 0.3)).ravel()
        idx = flag.nonzero()[0]
        if idx.size:
            k = antialias
            offs = (np.arange(k, dtype=np.float32) + 0.5) / k - 0.5
            ou, ov = (a.ravel() for a in np.meshgrid(offs, offs))
            us = ((idx % w).astype(np.float32)[:, None] + ou[None]).ravel()
            vs = ((idx // w).astype(np.float32)[:, None] + ov[None]).ravel()
            so, sd = camera_rays(scene.camera, (h, w), us, vs)
            st, ssid = raycast.trace(scene, so, sd)
            scol = shading.shade(scene, so, sd, st, ssid, shadow_samples)[0]
            scol = scol.reshape(3, idx.size, k * k).mean(axis=2)
            for r in range(3):
                color[r, idx] = scol[r]
    srgb = palette.to_srgb_u8(color).T.reshape(h, w, 3)
    if noise and scene.noise_std > 0:
        gen = np.random.default_rng(scene.noise_seed)
        srgb += gen.standard_normal((h, w, 3), dtype=np.float32) * np.float32(scene.noise_std)
    image = np.clip(np.rint(srgb), 0, 255).astype(np.uint8)
    rot = scene.camera.rotation().astype(np.float32)
    normals = (rot.T @ n_world).T.reshape(h, w, 3)
    return Rendering(image=image, depth=t.reshape(h, w), normals=np.ascontiguousarray(normals),
                     surface=sid.reshape(h, w))
