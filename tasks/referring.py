"""Referring segmentation codec: named targets, each painted in a stated color over a background.

    rgb = referring.encode(masks, colors)              # bool (K, H, W) -> uint8 (H, W, 3)
    masks = referring.decode(rgb, colors)              # -> bool (K, H, W), one per target
    prompt = referring.render_prompt(rng, targets=["the man in pink", "the other man"],
                                     colors=[(255, 255, 255), (0, 255, 0)])
    spec = referring.parse_prompt(prompt)             # {"targets", "colors", "background"}

Real prompts read "The stretching cat is rendered in green, the cat that is cleaning itself is
in cyan." or "The background is black color. The game control device is represented by a
solid yellow."; every color syntax of `tasks.colors` works. Decoding takes, per pixel, the
nearest stated color (background included) within `max_distance` (`nearest.nearest_color`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks import colors as colorlib
from tasks import semantic

NAME = "referring"
BLACK = (0, 0, 0)
DEFAULT_MAX_DISTANCE = semantic.DEFAULT_MAX_DISTANCE


def encode(masks: np.ndarray, colors, background: Sequence[int] = BLACK,
           targets: Sequence[str] | None = None) -> np.ndarray:
    """bool (K, H, W), one mask per target -> uint8 (H, W, 3); later targets paint over earlier
    ones where masks overlap. `targets` is accepted (and unused) for parsed specs."""
    del targets
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), got shape {m.shape}")
    c = semantic.as_colors(colors)
    if len(c) != len(m):
        raise ValueError(f"{len(m)} masks but {len(c)} colors")
    out = np.empty(m.shape[1:] + (3,), np.uint8)
    out[:] = colorlib.as_rgb(background)
    for mask, rgb in zip(m.astype(bool), c):
        out[mask] = rgb
    return out


def decode(rgb: np.ndarray, colors, background: Sequence[int] | None = BLACK,
           max_distance: float | None = DEFAULT_MAX_DISTANCE,
           fill_radius: float = 0, **spec_extras) -> np.ndarray:
    """uint8 (H, W, 3) -> bool (K, H, W): pixels whose nearest stated color is target k's,
    within `max_distance` (None: no limit); `fill_radius` as in `semantic.decode`. Other spec
    keys (`targets`, builder bookkeeping) are ignored. Never raises on image content."""
    del spec_extras
    c = semantic.as_colors(colors)
    labels = semantic.decode(rgb, c, max_distance=max_distance, background=background,
                             fill_radius=fill_radius)
    return labels[None] == np.arange(len(c))[:, None, None]


_LEAD_INS = (
    "A segmentation map image",
    "A segmentation map of the input image",
    "This image shows segmentation masks from the given image",
    "Generate a referring segmentation of the input image",
    "Segment the objects described below",
)


def render_prompt(rng: np.random.Generator, targets: Sequence[str], colors,
                  background: Sequence[int] = BLACK, state_background: bool | None = None,
                  **layout) -> str:
    """An instruction to paint each referred target in its color (a non-black background is
    always stated; black at random when `state_background` is None). `layout` may hold
    `layout=` / `style=` of `colors.render_mapping`."""
    return semantic.render_statements(rng, _LEAD_INS, targets, colors, background,
                                      state_background, **layout)


def parse_prompt(prompt: str) -> dict:
    """{"targets": [str], "colors": uint8 (K, 3), "background": (r, g, b)} of a prompt; the
    background is black when the prompt states none."""
    spec = semantic.parse_prompt(prompt)
    return {"targets": spec["classes"], "colors": spec["colors"],
            "background": spec["background"]}
