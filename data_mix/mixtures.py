"""Named mixture configs: `mixtures.get("synthetic_demo")` -> locked ConfigDict for `Mixture`.

Every mixture keeps most of the weight on generation (the generator's own kind of data) and
a small share on perception tasks, as the Vision Banana recipe does (the paper gives no ratio;
20% here so a short demo run sees every task often enough).

    synthetic_demo   embedded synthetic scenes (no download), 256 px: text-to-image and edits
                     80%, depth / normals / semantic / instance / referring / binary /
                     restoration 20%
    synthetic_tiny   the same at 32 px with 1,000 records per source (CPU tests, smoke runs)
    cityscapes_mix   synthetic generation 80% + Cityscapes semantic / instance 20%;
                     needs `root=` (a folder with leftImg8bit/ and gtFine/, or the zips)

Referring sources get no random crop: relational expressions ("the leftmost cone") can be
wrong once a crop removes other objects. Flips are safe everywhere (left/right words swap).
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from data_mix import mixture

_SCENES = "data_mix.synthetic:SyntheticScenes"
_T2I = "data_mix.synthetic:SyntheticTextToImage"
_EDITS = "data_mix.synthetic:SyntheticEdits"
_CITYSCAPES = "data_mix.sources.cityscapes:CityscapesSource"

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
                                                            crop_scale=crop, flip_prob=0.5)
    return c


def synthetic_tiny(seed: int = 0) -> ml_collections.ConfigDict:
    """synthetic_demo at 32 px, 1,000 records per source."""
    return synthetic_demo(resolution=32, num_records=1000, seed=seed)


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
    c.sources.cityscapes_instance = mixture.source_config(_CITYSCAPES, "instance", 0.08, kwargs=city,
                                                          crop_scale=(0.25, 1.0), flip_prob=0.5)
    return c


MIXTURES: dict[str, Callable[..., ml_collections.ConfigDict]] = {
    "synthetic_demo": synthetic_demo,
    "synthetic_tiny": synthetic_tiny,
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
