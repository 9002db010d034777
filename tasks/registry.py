"""Codec registry: one name per task, shared by configs, data builders and evaluation.

A codec is a module (not a class) exposing:

    NAME: str
    encode(target, **spec) -> uint8 (H, W, 3)        target -> RGB image
    decode(rgb, **spec) -> target                    any uint8 (H, W, 3) -> target; never raises on content
    render_prompt(rng: np.random.Generator, **spec) -> str   an instruction in a random phrasing
    parse_prompt(prompt: str) -> dict                 the spec stated by a prompt (colors, colormap, ...)

`spec` is what the prompt states and the decoder needs (a class -> color mapping, a colormap
name, a background color). `decode(rgb, **parse_prompt(render_prompt(rng, **spec)))` is the
round trip every codec supports.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module path. Imported lazily so `import tasks` stays cheap (jax is only pulled in by
# the on-device decode paths).
_CODECS: dict[str, str] = {
    "depth": "tasks.depth",
    "normals": "tasks.normals",
    "semantic": "tasks.semantic",
    "instance": "tasks.instance",
    "referring": "tasks.referring",
    "binary": "tasks.binary",
    "restoration": "tasks.restoration",
}


def names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_CODECS)


def get(name: str) -> ModuleType:
    """The codec module registered under `name` (e.g. `tasks.get("depth").decode(rgb)`)."""
    try:
        path = _CODECS[name]
    except KeyError:
        raise KeyError(f"unknown task codec {name!r}; registered: {', '.join(names())}") from None
    return importlib.import_module(path)
