"""Restoration codec: the target is the clean image itself (identity), asked for by kind.

    prompt = restoration.render_prompt(rng, kind="derain")
    restoration.parse_prompt(prompt)                 # {"kind": "derain"}
    restoration.render_prompt(rng, kind="super_resolution", scale=4)   # "... by 4x ..."
    clean = restoration.decode(generated_rgb)        # a copy of the image

`KINDS` lists the subtasks; each has its own phrasings, and `parse_prompt` recognizes the kind
by keywords (checked in `KINDS` order, most specific first, so "raindrops" is not "rain").
"""

from __future__ import annotations

import re

import numpy as np

from tasks import nearest, prompts

NAME = "restoration"

# kind -> (phrasings, keyword pattern). Phrasings of one kind never contain another kind's
# keywords (checked by the tests).
_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "deraindrop": (("Remove the raindrops from the lens in this photo.",
                    "Clean the water droplets off this image.",
                    "Restore this image taken through a window covered in raindrops."),
                   r"\braindrops?\b|\bwater droplets?\b"),
    "derain": (("Remove the rain streaks from this image.", "Derain the input image.",
                "Generate a clean version of this rainy photo."),
               r"\bderain|\brain streaks?\b|\brainy\b|\brain\b"),
    "desnow": (("Remove the falling snow from this image.", "Desnow the input image.",
                "Generate this snowy photo without the snowflakes."),
               r"\bdesnow|\bsnow"),
    "dehaze": (("Remove the haze from this image.", "Dehaze the input image.",
                "Restore the contrast of this foggy photo."),
               r"\bdehaz|\bhaz[ey]\b|\bfog"),
    "denoise": (("Remove the noise from this image.", "Denoise the input image.",
                 "Generate a clean version of this noisy photo."),
                r"\bdenois|\bnois[ey]\b"),
    "deblur": (("Remove the blur from this image.", "Deblur the input image.",
                "Make this blurry photo sharp."),
               r"\bdeblur|\bblur"),
    "low_light": (("Enhance this low-light image.", "Brighten this underexposed photo.",
                   "Restore this image taken at night with little light."),
                  r"\blow[- ]light|\bunderexposed|\blittle light\b"),
    "jpeg_artifacts": (("Remove the JPEG compression artifacts from this image.",
                        "Restore this heavily compressed JPEG photo."),
                       r"\bjpeg\b|\bcompression artifacts?\b"),
    "shadow_removal": (("Remove the shadows from this image.",
                        "Generate this photo without the cast shadows."),
                       r"\bshadows?\b"),
    "super_resolution": (("Upscale this image{s}.", "Generate a super-resolution version of "
                          "this image{s}.", "Increase the resolution of this photo{s}."),
                         r"\bupscal|\bsuper[- ]resolution|\bincrease the resolution"),
}
KINDS = tuple(_KINDS)
_PATTERNS = {k: re.compile(p, re.I) for k, (_, p) in _KINDS.items()}
_SCALE = re.compile(r"\bby (?:a factor of )?(\d+)\s*[x×]?", re.I)


def encode(image: np.ndarray, kind: str | None = None, scale: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) clean image -> the same image (a copy); kind / scale are prompt-only."""
    del kind, scale
    return nearest.as_image(image).copy()


def decode(rgb: np.ndarray, **spec_extras) -> np.ndarray:
    """uint8 (H, W, 3) generated image -> the restored image (a copy); spec keys (`kind`,
    `scale`, builder bookkeeping) are ignored."""
    del spec_extras
    return nearest.as_image(rgb).copy()


def render_prompt(rng: np.random.Generator, kind: str, scale: int | None = None) -> str:
    """An instruction for restoration `kind` (one of `KINDS`); `scale` (super-resolution only)
    is written as "by 4x"."""
    if kind not in _KINDS:
        raise ValueError(f"unknown restoration kind {kind!r}; expected one of {KINDS}")
    if scale is not None and (kind != "super_resolution" or int(scale) < 2):
        raise ValueError(f"scale={scale!r} only applies to super_resolution, as an integer >= 2")
    text = prompts.choice(rng, _KINDS[kind][0])
    return text.format(s=f" by {int(scale)}x" if scale else "")


def parse_prompt(prompt: str) -> dict:
    """{"kind": one of KINDS or None} (plus "scale" for a super-resolution factor)."""
    for kind, pattern in _PATTERNS.items():
        if pattern.search(prompt):
            spec: dict = {"kind": kind}
            m = _SCALE.search(prompt) if kind == "super_resolution" else None
            if m:
                spec["scale"] = int(m.group(1))
            return spec
    return {"kind": None}
