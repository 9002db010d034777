"""Named colors of the synthetic scenes, so captions and edit instructions can name them.

Two palettes: saturated `OBJECT_COLORS` for the primitives (names a caption can use:
"a red sphere") and muted `ROOM_COLORS` for floor, walls and ceiling. Values are sRGB uint8
triples; shading works in linear light, so `to_linear` converts (the IEC 61966-2-1 curve).
"""

from __future__ import annotations

import functools

import numpy as np

# Chosen so that every pair stays far apart after shading, which keeps "make the red sphere
# blue" a visible change and the names unambiguous.
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 30, 35),
    "green": (40, 160, 60),
    "blue": (35, 75, 200),
    "yellow": (240, 210, 40),
    "orange": (240, 125, 25),
    "purple": (125, 55, 170),
    "pink": (240, 120, 170),
    "cyan": (40, 190, 210),
    "white": (235, 235, 230),
    "gray": (125, 125, 125),
    "black": (30, 30, 32),
    "brown": (120, 75, 40),
}

ROOM_COLORS: dict[str, tuple[int, int, int]] = {
    "white": (228, 226, 220),
    "light gray": (185, 185, 182),
    "gray": (130, 130, 128),
    "dark gray": (70, 70, 72),
    "beige": (215, 198, 165),
    "tan": (190, 160, 120),
    "brown": (125, 90, 60),
    "cream": (240, 230, 200),
    "light blue": (165, 195, 225),
    "sage green": (160, 185, 150),
    "terracotta": (190, 105, 75),
    "black": (35, 35, 38),
}

# Textures mix two room colors; these pairs read well and have names captions can use.
_HIGH_CONTRAST = {("white", "black"), ("cream", "dark gray"), ("beige", "brown"),
                  ("white", "gray"), ("light gray", "dark gray"), ("tan", "brown"),
                  ("white", "terracotta"), ("light blue", "white"), ("sage green", "cream")}
TEXTURE_COLOR_PAIRS: tuple[tuple[str, str], ...] = tuple(sorted(_HIGH_CONTRAST))

SKY_ZENITH = (95, 150, 225)
SKY_HORIZON = (200, 222, 240)


@functools.lru_cache(maxsize=None)
def _linear_of(rgb: tuple[int, ...]) -> np.ndarray:
    c = np.asarray(rgb, np.float64) / 255.0
    out = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    out.flags.writeable = False
    return out


def to_linear(srgb_u8) -> np.ndarray:
    """sRGB uint8 values (a triple, or any array) -> float32 linear-light values in [0, 1].

    Triples are cached (palette colors are converted on every render)."""
    if isinstance(srgb_u8, tuple):
        return _linear_of(srgb_u8)
    c = np.asarray(srgb_u8, np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


# Linear -> sRGB by table lookup: np.power is the costliest op of a render otherwise. 2^16
# entries keep the error under 0.03 of an 8-bit level, far below the sensor noise.
_LUT_SIZE = 1 << 16
_lin = np.arange(_LUT_SIZE, dtype=np.float64) / (_LUT_SIZE - 1)
_SRGB_LUT = (255.0 * np.where(_lin <= 0.0031308, 12.92 * _lin,
                              1.055 * np.power(_lin, 1 / 2.4) - 0.055)).astype(np.float32)
del _lin


def to_srgb_u8(linear: np.ndarray) -> np.ndarray:
    """Linear-light float values (any shape) -> sRGB in [0, 255] as float32 (not yet rounded,
    so sensor noise can be added before quantization); values outside [0, 1] are clipped."""
    idx = (np.clip(linear, 0.0, 1.0) * np.float32(_LUT_SIZE - 1) + np.float32(0.5))
    return _SRGB_LUT.take(idx.astype(np.int32))
