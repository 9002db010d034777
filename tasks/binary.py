"""Binary mask codec: the medical-style "generate a binary segmentation mask of the polyp".

The target is painted in the foreground color (white) on the background color (black) unless
the prompt states others ("The lesion is red and the background is black.").

    rgb = binary.encode(mask)                          # bool (H, W) -> uint8 (H, W, 3)
    mask = binary.decode(rgb)                          # -> bool (H, W), threshold at half way
    mask = binary.decode(rgb, method="otsu")           # Otsu's threshold on the same axis

Decoding projects every pixel on the background -> foreground axis,
t = (x - bg) . (fg - bg) / |fg - bg|^2 (0 at the background, 1 at the foreground), then
thresholds t: at `threshold` (default 0.5; for white on black, the gray level 127.5), or at
Otsu's threshold of t over the image (`method="otsu"`; a uniform image gives all False when
it is nearer the background, all True otherwise).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import cv2
import numpy as np

from tasks import colors as colorlib
from tasks import nearest, prompts, semantic

NAME = "binary"
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
METHODS = ("threshold", "otsu")


def encode(mask: np.ndarray, foreground: Sequence[int] = WHITE,
           background: Sequence[int] = BLACK, target: str | None = None) -> np.ndarray:
    """bool (H, W) -> uint8 (H, W, 3): `foreground` on the mask, `background` elsewhere."""
    del target
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    lut = np.array([colorlib.as_rgb(background), colorlib.as_rgb(foreground)], np.uint8)
    return lut[m.astype(bool).astype(np.intp)]


def decode(rgb: np.ndarray, foreground: Sequence[int] = WHITE,
           background: Sequence[int] = BLACK, method: str = "threshold",
           threshold: float = 0.5, **spec_extras) -> np.ndarray:
    """uint8 (H, W, 3) -> bool (H, W) foreground mask (see the module docstring). Other spec
    keys (`target`, builder bookkeeping) are ignored."""
    del spec_extras
    img = nearest.as_image(rgb)
    fg = np.asarray(colorlib.as_rgb(foreground), np.float32)
    bg = np.asarray(colorlib.as_rgb(background), np.float32)
    axis = fg - bg
    if not axis.any():
        raise ValueError(f"foreground and background are both {tuple(int(v) for v in fg)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    t = (img.reshape(-1, 3).astype(np.float32) - bg) @ (axis / axis.dot(axis))
    t = t.reshape(img.shape[:2])
    if method == "threshold" or t.size == 0:
        return t > threshold
    levels = np.clip(np.round(t * 255), 0, 255).astype(np.uint8)
    if levels.min() == levels.max():  # Otsu is undefined on a single level
        return np.full(t.shape, levels.flat[0] > 127)
    cut, _ = cv2.threshold(levels, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return levels > cut


_TEMPLATES = (
    "Generate a binary segmentation mask of the {t}.",
    "Generate a binary mask of the {t}.",
    "Segment the {t} as a binary mask.",
    "Create a black-and-white mask where the {t} is highlighted.",
    "Produce a binary segmentation mask for the {t}.",
)
_TARGET = [re.compile(p, re.I) for p in (
    r"\bmask (?:of|for) (?:the |all |every )?(?P<t>[^.,;:]+?)(?:[.,;:]|$| in | on | from )",
    r"\bsegment (?:the |all |every )?(?P<t>[^.,;:]+?) as a binary mask",
    r"\bwhere the (?P<t>[^.,;:]+?) (?:is|are) highlighted",
)]
_GRAMMAR_WORDS = frozenset({"of", "for", "in", "on", "from", "as", "where", "mask", "binary",
                            "highlighted", "the", "all", "every"})


def _write_target(target: str) -> str:
    if prompts.is_plain_name(target) and not set(target.lower().split()) & _GRAMMAR_WORDS:
        return target
    return json.dumps(target, ensure_ascii=False)


def render_prompt(rng: np.random.Generator, target: str, foreground: Sequence[int] = WHITE,
                  background: Sequence[int] = BLACK) -> str:
    """An instruction asking for a binary mask of `target`; colors other than white on black
    are stated."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a non-empty name, got {target!r}")
    fg, bg = colorlib.as_rgb(foreground), colorlib.as_rgb(background)
    if fg == bg:
        raise ValueError(f"foreground and background are both {fg}")
    text = prompts.choice(rng, _TEMPLATES).format(t=_write_target(target))
    if (fg, bg) != (WHITE, BLACK) or rng.random() < 0.3:
        text += " " + colorlib.render_mapping({target: fg, "background": bg}, rng,
                                              layout="sentences")
    return text


def parse_prompt(prompt: str) -> dict:
    """{"target": str or None, "foreground": (r, g, b), "background": (r, g, b)}; white on
    black unless the prompt states colors."""
    fg, bg = WHITE, BLACK
    for name, rgb in colorlib.parse_mapping(prompt).items():
        if name.strip().lower() in semantic.BACKGROUND_NAMES:
            bg = rgb
        else:
            fg = rgb
    target = prompts.find_subject(prompt, _TARGET)
    return {"target": target, "foreground": fg, "background": bg}
