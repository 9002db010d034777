"""Find the parts of a pretrained Flux checkpoint on disk: which file holds what, in which names.

Accepted (one path, or several separated by commas; a part is taken from the first path that
has it):

- a diffusers pipeline folder (`model_index.json`, or any of the component folders):
  `transformer/` (FluxTransformer2DModel: config.json + safetensors, sharded with an index),
  `vae/` (AutoencoderKL), `text_encoder/` (CLIP), `text_encoder_2/` (T5), `tokenizer/`,
  `tokenizer_2/`, `scheduler/`. This is the layout of the FLUX.1-dev / -schnell /
  -Kontext-dev repositories, which also hold the BFL single files at the top level: the
  diffusers folders are preferred when both are there.
- one component folder (a config.json naming its class + weights);
- a BFL single file: the transformer (`flux1-dev.safetensors`, `flux1-schnell.safetensors`,
  `flux1-kontext-dev.safetensors`) or the autoencoder (`ae.safetensors`), recognised by their
  tensor names; or a folder of such files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

from vision_banana.convert.safetensors_io import SafetensorsFile

PARTS = ("transformer", "vae", "t5", "clip")
# diffusers pipeline sub-folder -> part
PIPELINE_FOLDERS = {"transformer": "transformer", "vae": "vae", "text_encoder": "clip",
                    "text_encoder_2": "t5"}
CLASS_PARTS = {"FluxTransformer2DModel": "transformer", "AutoencoderKL": "vae",
               "T5EncoderModel": "t5", "CLIPTextModel": "clip",
               "CLIPTextModelWithProjection": "clip"}


@dataclasses.dataclass
class Component:
    """One part of a checkpoint.

    part: "transformer" | "vae" | "t5" | "clip"; format: "diffusers" (diffusers / transformers
    names, with a config) or "bfl" (Black Forest Labs single file, no config); weights: what
    `safetensors_io.open_checkpoint` opens; config: the parsed config.json (None for BFL).
    """

    part: str
    format: str
    weights: pathlib.Path
    config: dict | None = None

    def __str__(self) -> str:
        return f"{self.part} ({self.format}) at {self.weights}"


@dataclasses.dataclass
class Layout:
    """What was found: components by part, the tokenizer root and the scheduler config."""

    components: dict[str, Component]
    tokenizer_dir: pathlib.Path | None = None
    scheduler: dict | None = None
    sources: tuple[str, ...] = ()

    def require(self, *parts: str) -> None:
        missing = [p for p in parts if p not in self.components]
        if missing:
            raise FileNotFoundError(f"{', '.join(self.sources)}: no {missing} found (have "
                                    f"{sorted(self.components)}); see vision_banana.convert.layout")


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None


def _class_part(config: dict) -> str | None:
    names = [config.get("_class_name")] + list(config.get("architectures") or [])
    for name in names:
        if name in CLASS_PARTS:
            return CLASS_PARTS[name]
    return None


def sniff_file(path: pathlib.Path) -> Component | None:
    """The component a single .safetensors file holds, from its tensor names (None: unknown)."""
    with SafetensorsFile(path) as f:
        names = set(f.tensors)
    if "img_in.weight" in names or "model.diffusion_model.img_in.weight" in names:
        return Component("transformer", "bfl", path)
    if "encoder.conv_in.weight" in names and "decoder.conv_in.weight" in names:
        if "encoder.down.0.block.0.conv1.weight" in names:
            return Component("vae", "bfl", path)
    return None


def _component_folder(folder: pathlib.Path, part_hint: str | None) -> Component | None:
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    config = _read_json(config_path)
    part = _class_part(config) or part_hint
    if part is None:
        name = config.get("_class_name") or config.get("architectures")
        raise ValueError(f"{config_path}: class {name} is none of {sorted(CLASS_PARTS)}")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder}: config.json but no .safetensors weights (only "
                                "safetensors checkpoints are read)")
    return Component(part, "diffusers", folder, config)


def _discover_one(path: pathlib.Path) -> Layout:
    found: dict[str, Component] = {}
    tokenizer_dir, scheduler = None, None
    if path.is_file():
        comp = sniff_file(path)
        if comp is None:
            raise ValueError(f"{path}: neither a BFL Flux transformer nor a BFL autoencoder "
                             "(tensor names unknown)")
        found[comp.part] = comp
    elif path.is_dir():
        for sub, part in PIPELINE_FOLDERS.items():
            if (path / sub).is_dir():
                comp = _component_folder(path / sub, part)
                if comp is not None:
                    found.setdefault(comp.part, comp)
        if (path / "tokenizer").is_dir() or (path / "tokenizer_2").is_dir():
            tokenizer_dir = path
        if (path / "scheduler" / "scheduler_config.json").is_file():
            scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
        comp = _component_folder(path, None)
        if comp is not None:
            found.setdefault(comp.part, comp)
        if comp is None:
            for file in sorted(path.glob("*.safetensors")):
                single = sniff_file(file)
                if single is not None:
                    found.setdefault(single.part, single)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    return Layout(found, tokenizer_dir, scheduler, (str(path),))


def discover(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Layout:
    """The checkpoint parts found at `paths` (comma-separated string or a sequence)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [p.strip() for p in str(paths).split(",") if p.strip()]
    if not paths:
        raise ValueError("no checkpoint path given")
    layout = Layout({}, sources=tuple(str(p) for p in paths))
    for p in paths:
        one = _discover_one(pathlib.Path(p).expanduser())
        for part, comp in one.components.items():
            layout.components.setdefault(part, comp)
        layout.tokenizer_dir = layout.tokenizer_dir or one.tokenizer_dir
        layout.scheduler = layout.scheduler or one.scheduler
    if not layout.components:
        raise FileNotFoundError(f"{', '.join(layout.sources)}: no Flux checkpoint parts found "
                                "(see vision_banana.convert.layout for the accepted layouts)")
    return layout
