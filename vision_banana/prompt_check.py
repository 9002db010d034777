"""Up-front checks of a prompt against the codec that will decode its output.

    spec = prompt_check.decode_spec("semantic", prompt)    # ValueError naming what is wrong

A label-map decoder given a prompt whose class -> color mapping it cannot read decodes every
pixel as unlabelled, without an error; commands call this before loading or generating
anything, so a malformed prompt is one clear line instead of an empty map. The prompt is read
by the codec's own parser (`codec.parse_prompt`, `tasks.colors.parse_mapping`), so what passes
here is exactly what the decoder will use.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

import tasks
from tasks import colors as colorlib

#: Tasks whose decoder needs at least one class (or target) -> color statement.
NEEDS_MAPPING = ("semantic", "referring")
#: Tasks whose prompt may state colors (classes, targets, foreground, background).
STATES_COLORS = ("semantic", "referring", "instance", "binary")

# A quoted subject opening a JSON-style mapping entry ({"car": ..., 'road': ...}), whose color
# must be readable. Only after "{" or "," so that apostrophes in names ("dog's tail") are text.
_QUOTED_KEY = re.compile(r"""[{,]\s*(?:"([^"]+)"|'([^']+)')\s*:""")
_ARTICLE = re.compile(r"^(the|a|an)\s+")


def decode_spec(task: str, prompt: str) -> dict:
    """The decode arguments `tasks.get(task).parse_prompt(prompt)` reads, checked.

    Raises KeyError for an unknown task (naming the registered ones) and ValueError, naming
    the prompt and the fault, when the prompt cannot drive the decoder: a color the parser
    rejects; for semantic / referring no class -> color statement at all, or two classes
    given one color; for every color-stating task a quoted mapping entry ("car": ...) whose
    color could not be read (it would silently be left out).
    """
    codec = tasks.get(task)
    try:
        spec = codec.parse_prompt(prompt)
    except ValueError as e:
        raise ValueError(f"prompt {prompt!r}: {e}") from None
    if task not in STATES_COLORS:
        return spec
    with warnings.catch_warnings():  # the codec's parse above already warned once
        warnings.simplefilter("ignore")
        read = {name.strip().lower() for name in colorlib.parse_mapping(prompt)}
    read |= {_ARTICLE.sub("", name) for name in read}
    keys = [a or b for a, b in _QUOTED_KEY.findall(prompt)]
    unread = [k for k in keys if _ARTICLE.sub("", k.strip().lower()) not in read]
    if unread:
        raise ValueError(f"prompt {prompt!r}: no readable color for {unread[0]!r} (expected e.g. "
                         f"\"{unread[0]}\": (255, 0, 0), \"#FF0000\" or a color name)")
    if task in NEEDS_MAPPING:
        names = spec.get("classes", spec.get("targets")) or []
        if not names:
            raise ValueError(f"prompt {prompt!r}: states no class -> color mapping, so every "
                             f"pixel would decode as unlabelled (expected e.g. "
                             f"'{{\"car\": (255, 0, 0), \"road\": (0, 0, 255)}}')")
        colors = np.asarray(spec["colors"]).reshape(-1, 3)
        seen: dict[tuple, str] = {}
        for name, rgb in zip(names, map(tuple, colors.tolist())):
            if rgb in seen:
                raise ValueError(f"prompt {prompt!r}: {seen[rgb]!r} and {name!r} are both "
                                 f"{rgb}; the decoder cannot tell them apart")
            seen[rgb] = name
    return spec

