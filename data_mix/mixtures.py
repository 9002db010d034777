"""Named mixture configs: `mixtures.get("synthetic_demo")` -> locked ConfigDict for `Mixture`.

Every mixture keeps most of the weight on generation (the generator's own kind of data) and
a small share on perception tasks, as the Vision Banana recipe does (the paper gives no ratio;
20% here so a short demo run sees every task often enough).

    synthetic_demo   embedded synthetic scenes (no download), 256 px: text-to-image and edits
                     80%, depth / normals / semantic / instance / referring / binary /
                     restoration 20%
    synthetic_tiny   the same at 32 px with 1,000 records per source (CPU tests, smoke runs)
    synthetic_perception_demo
                     what `make demo` trains (vision_banana.demo), 32 px: generation 20%,
                     depth / normals / semantic / instance 20% each, with the demo
                     simplifications listed in its docstring
    cityscapes_mix   synthetic generation 80% + Cityscapes semantic / instance 20%;
                     needs `root=` (a folder with leftImg8bit/ and gtFine/, or the zips)

Referring sources get no random crop: relational expressions ("the leftmost cone") can be
wrong once a crop removes other objects. Flips are safe everywhere (left/right words swap).
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from data_mix import mixture
from data_mix.sources.cityscapes import INSTANCE_CLASSES
from data_mix.synthetic.scene import KINDS

_SCENES = "data_mix.synthetic:SyntheticScenes"
_T2I = "data_mix.synthetic:SyntheticTextToImage"
_EDITS = "data_mix.synthetic:SyntheticEdits"
_CITYSCAPES = "data_mix.sources.cityscapes:CityscapesSource"

def _scene_builder(task: str) -> dict:
    """Builder options every synthetic-scene source needs: a scene whose objects are all
    hidden still makes an instance example, asking for a primitive kind (empty answer)."""
    return {"vocabulary": list(KINDS)} if task == "instance" else {}


# Perception share of the synthetic mixtures, by task (sums to 0.20).
_PERCEPTION = {"depth": 0.04, "normals": 0.04, "semantic": 0.04, "instance": 0.03,
               "referring": 0.02, "binary": 0.01, "restoration": 0.02}


def synthetic_demo(resolution: int = 256, num_records: int = 10_000, seed: int = 0) -> ml_collections.ConfigDict:
    """The embedded default mixture (see the module docstring)."""
    c = mixture.default_config()
    c.seed = seed
    c.resolution = (resolution, resolution)
    scene = dict(seed=seed, size=resolution, num_records=num_records, split="train")
    c.sources.text_to_image = mixture.source_config(_T2I, "generation", 0.45, kwargs=scene)
    c.sources.edits = mixture.source_config(_EDITS, "generation", 0.35, kwargs=scene)
    for task, weight in _PERCEPTION.items():
        crop = None if task == "referring" else (0.4, 1.0)
        c.sources[f"scenes_{task}"] = mixture.source_config(_SCENES, task, weight, kwargs=scene,
                                                            crop_scale=crop, flip_prob=0.5,
                                                            builder=_scene_builder(task))
    return c


def synthetic_tiny(seed: int = 0) -> ml_collections.ConfigDict:
    """synthetic_demo at 32 px, 1,000 records per source."""
    return synthetic_demo(resolution=32, num_records=1000, seed=seed)


# The CPU demo's shares (see synthetic_perception_demo); they sum to 1.
DEMO_SHARES = {"generation": 0.2, "depth": 0.2, "normals": 0.2, "semantic": 0.2, "instance": 0.2}
# Builder options of the demo (data_mix.builders): what a ~2M-parameter model can learn in a
# few CPU minutes.
DEMO_BUILDERS = {
    "depth": {"colormap_prob": 0.0},
    "normals": {},
    "semantic": {"fixed_colors": True},
    "instance": {"fixed_colors": True, "background_prob": 0.0, "palette_size": 8},
}


def synthetic_perception_demo(resolution: int = 32, num_records: int = 5000, seed: int = 0,
                              generation_share: float = DEMO_SHARES["generation"]
                              ) -> ml_collections.ConfigDict:
    """The mixture `make demo` trains: the recipe (one generator, its own generation data
    mixed with perception tasks whose targets are RGB images), sized for 2 CPU cores.

    Generation (text-to-image and edits, half each) keeps `generation_share` of the examples;
    depth, normals, semantic and instance split the rest equally. Departures from the paper's
    recipe, all to make a ~2M-parameter model learn in minutes (`docs/demo.md`):
      - the perception share is large (80% by default; the paper's is "very small");
      - depth targets use the rainbow colormap only (no colormap augmentation);
      - semantic colors are fixed (every class always in the same color, still stated in the
        prompt) and instance colors follow a fixed left-to-right order, where the paper draws
        a random mapping per example and lets the model pick instance colors;
      - no random crops: a crop rescales the scene, which changes its apparent metric depth
        (the synthetic camera is fixed); horizontal flips only.
    """
    if not 0 < generation_share < 1:
        raise ValueError(f"generation_share={generation_share}; expected a fraction in (0, 1)")
    c = mixture.default_config()
    c.seed = seed
    c.resolution = (resolution, resolution)
    scene = dict(seed=seed, size=resolution, num_records=num_records, split="train")
    c.sources.text_to_image = mixture.source_config(_T2I, "generation", generation_share / 2,
                                                    kwargs=scene)
    c.sources.edits = mixture.source_config(_EDITS, "generation", generation_share / 2,
                                            kwargs=scene)
    each = (1.0 - generation_share) / len(DEMO_BUILDERS)
    for task, options in DEMO_BUILDERS.items():
        c.sources[f"scenes_{task}"] = mixture.source_config(
            _SCENES, task, each, kwargs=scene, flip_prob=0.5,
            builder={**_scene_builder(task), **options})
    return c


def cityscapes_mix(root: str, resolution: int = 512, seed: int = 0) -> ml_collections.ConfigDict:
    """Synthetic generation data plus Cityscapes train semantic (12%) and instance (8%)."""
    c = mixture.default_config()
    c.seed = seed
    c.resolution = (resolution, resolution)
    scene = dict(seed=seed, size=resolution, num_records=100_000, split="train")
    c.sources.text_to_image = mixture.source_config(_T2I, "generation", 0.45, kwargs=scene)
    c.sources.edits = mixture.source_config(_EDITS, "generation", 0.35, kwargs=scene)
    city = dict(root=root, split="train")
    # The semantic share need not decode instanceIds.
    c.sources.cityscapes_semantic = mixture.source_config(
        _CITYSCAPES, "semantic", 0.12, kwargs={**city, "with_instances": False},
        crop_scale=(0.25, 1.0), flip_prob=0.5)
    # A street without any of the 8 instance classes asks for one of them (empty answer).
    c.sources.cityscapes_instance = mixture.source_config(
        _CITYSCAPES, "instance", 0.08, kwargs=city, crop_scale=(0.25, 1.0), flip_prob=0.5,
        builder={"vocabulary": list(INSTANCE_CLASSES)})
    return c


MIXTURES: dict[str, Callable[..., ml_collections.ConfigDict]] = {
    "synthetic_demo": synthetic_demo,
    "synthetic_tiny": synthetic_tiny,
    "synthetic_perception_demo": synthetic_perception_demo,
    "cityscapes_mix": cityscapes_mix,
}


def names() -> list[str]:
    return sorted(MIXTURES)


def get(name: str, **kwargs) -> ml_collections.ConfigDict:
    """The named mixture config, locked (unknown keys fail); kwargs go to its function."""
    try:
        fn = MIXTURES[name]
    except KeyError:
        raise KeyError(f"unknown mixture {name!r}; known: {', '.join(names())}") from None
    config = fn(**kwargs)
    config.lock()
    return config
