"""Procedural synthetic scenes: the embedded default data (no download).

A room (textured floor and walls, optional ceiling or open sky), 1-6 primitives (spheres,
boxes, cylinders, cones, tori) resting on the floor, a point / area light and a pinhole
camera, ray cast in vectorized numpy at any resolution with exact metric depth, camera-frame
normals, semantic and instance labels, captions, referring expressions and edit pairs.

    from data_mix.synthetic import SyntheticScenes, SyntheticTextToImage, SyntheticEdits
    src = SyntheticScenes(seed=0, size=(256, 256), num_records=10_000, split="train")
    rec = src[0]   # {"image", "depth", "normals", "semantic", "classes", ...}

Modules: `scene` (description and sampling), `raycast` (geometry), `shading` (textures,
lighting), `render` (images and labels), `captions` (text), `edits` (edit pairs), `source`
(the random-access sources). `render.render(scene, (H, W))` renders one scene.
"""

from data_mix.synthetic.render import CLASSES, Rendering
from data_mix.synthetic.scene import KINDS, Scene, sample_scene
from data_mix.synthetic.source import SPLITS, SyntheticEdits, SyntheticScenes, SyntheticTextToImage

__all__ = ["CLASSES", "KINDS", "SPLITS", "Rendering", "Scene", "SyntheticEdits",
           "SyntheticScenes", "SyntheticTextToImage", "sample_scene"]
