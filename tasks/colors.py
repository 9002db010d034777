"""Colors in instruction prompts: parse every syntax they use, and write them back.

Syntaxes read (case-insensitive where it makes sense):

    (255, 0, 0)   <255, 255, 0>   [12, 34, 56]   RGB(88, 50, 82)   rgb(88 50 82)
    #80C000   #8c0   #10aa05   (#RGBA / #RRGGBBAA: alpha ignored)
    red   lightblue / "light blue"   "light purple"   "solid yellow"   "black color"
    "the color red"

Names are the 148 CSS Color Module 4 keywords (`CSS_COLORS`) plus a few common names CSS lacks
(`EXTRA_COLORS`). One deliberate deviation: "green" reads as (0, 255, 0), the way image
generators paint it (the real Vision Banana outputs for "rendered in green" are (2, 253, 0)),
not CSS #008000; `CSS_COLORS["green"]` keeps the CSS value and `COLOR_NAMES` holds what the
parser uses. Names are only written into prompts when they are exact (`names_for`).

Malformed hex codes: a 5-digit code is read with its last digit repeated (`#40FFC` ->
`#40FFCC`) and a `MalformedColorWarning` is issued. A real Vision Banana prompt contains
`#40FFC`, and the model painted (67, 255, 203) for it, closest to this reading (#40FFC0 would
be 11 levels off). With `strict=True`, and for every other invalid length (7, or > 8 digits),
a `ValueError` names the text. Channels above 255 are errors.

Mappings (class -> color statements, `parse_mapping` / `render_mapping`):

    {"cat ears": <255, 165, 0>, "exit sign": "#0000FF", "background": [125, 0, 125]}
    The macaron cakes are represented by (255, 255, 0). The sky is in (255, 0, 192).
    the cat that is cleaning itself is in cyan; The background is set to #10aa05.
    background is black color.   cat: red, dog: (0, 0, 255)

A statement is `<subject> <verb phrase> <color>`; verb phrases: "is/are [each] <represented|
depicted|shown|rendered|painted|colored|...> [in|as|by|with|to] [the color]", "is in", "is",
"will be", ":", "=", "->". The subject runs back to the previous statement or sentence
boundary; one leading article is dropped ("The sky" -> "sky"). Named colors are recognized
only right after a verb phrase, so class names such as "red car" stay names.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from tasks import prompts

RGB = tuple[int, int, int]


class MalformedColorWarning(UserWarning):
    """A color in a prompt was malformed and read with the documented fallback."""


# CSS Color Module Level 4 named colors (all 148 keywords, "grey" spellings included).
CSS_COLORS: dict[str, RGB] = {
    "aliceblue": (240, 248, 255), "antiquewhite": (250, 235, 215), "aqua": (0, 255, 255),
    "aquamarine": (127, 255, 212), "azure": (240, 255, 255), "beige": (245, 245, 220),
    "bisque": (255, 228, 196), "black": (0, 0, 0), "blanchedalmond": (255, 235, 205),
    "blue": (0, 0, 255), "blueviolet": (138, 43, 226), "brown": (165, 42, 42),
    "burlywood": (222, 184, 135), "cadetblue": (95, 158, 160), "chartreuse": (127, 255, 0),
    "chocolate": (210, 105, 30), "coral": (255, 127, 80), "cornflowerblue": (100, 149, 237),
    "cornsilk": (255, 248, 220), "crimson": (220, 20, 60), "cyan": (0, 255, 255),
    "darkblue": (0, 0, 139), "darkcyan": (0, 139, 139), "darkgoldenrod": (184, 134, 11),
    "darkgray": (169, 169, 169), "darkgreen": (0, 100, 0), "darkgrey": (169, 169, 169),
    "darkkhaki": (189, 183, 107), "darkmagenta": (139, 0, 139), "darkolivegreen": (85, 107, 47),
    "darkorange": (255, 140, 0), "darkorchid": (153, 50, 204), "darkred": (139, 0, 0),
    "darksalmon": (233, 150, 122), "darkseagreen": (143, 188, 143),
    "darkslateblue": (72, 61, 139), "darkslategray": (47, 79, 79), "darkslategrey": (47, 79, 79),
    "darkturquoise": (0, 206, 209), "darkviolet": (148, 0, 211), "deeppink": (255, 20, 147),
    "deepskyblue": (0, 191, 255), "dimgray": (105, 105, 105), "dimgrey": (105, 105, 105),
    "dodgerblue": (30, 144, 255), "firebrick": (178, 34, 34), "floralwhite": (255, 250, 240),
    "forestgreen": (34, 139, 34), "fuchsia": (255, 0, 255), "gainsboro": (220, 220, 220),
    "ghostwhite": (248, 248, 255), "gold": (255, 215, 0), "goldenrod": (218, 165, 32),
    "gray": (128, 128, 128), "green": (0, 128, 0), "greenyellow": (173, 255, 47),
    "grey": (128, 128, 128), "honeydew": (240, 255, 240), "hotpink": (255, 105, 180),
    "indianred": (205, 92, 92), "indigo": (75, 0, 130), "ivory": (255, 255, 240),
    "khaki": (240, 230, 140), "lavender": (230, 230, 250), "lavenderblush": (255, 240, 245),
    "lawngreen": (124, 252, 0), "lemonchiffon": (255, 250, 205), "lightblue": (173, 216, 230),
    "lightcoral": (240, 128, 128), "lightcyan": (224, 255, 255),
    "lightgoldenrodyellow": (250, 250, 210), "lightgray": (211, 211, 211),
    "lightgreen": (144, 238, 144), "lightgrey": (211, 211, 211), "lightpink": (255, 182, 193),
    "lightsalmon": (255, 160, 122), "lightseagreen": (32, 178, 170),
    "lightskyblue": (135, 206, 250), "lightslategray": (119, 136, 153),
    "lightslategrey": (119, 136, 153), "lightsteelblue": (176, 196, 222),
    "lightyellow": (255, 255, 224), "lime": (0, 255, 0), "limegreen": (50, 205, 50),
    "linen": (250, 240, 230), "magenta": (255, 0, 255), "maroon": (128, 0, 0),
    "mediumaquamarine": (102, 205, 170), "mediumblue": (0, 0, 205),
    "mediumorchid": (186, 85, 211), "mediumpurple": (147, 112, 219),
    "mediumseagreen": (60, 179, 113), "mediumslateblue": (123, 104, 238),
    "mediumspringgreen": (0, 250, 154), "mediumturquoise": (72, 209, 204),
    "mediumvioletred": (199, 21, 133), "midnightblue": (25, 25, 112),
    "mintcream": (245, 255, 250), "mistyrose": (255, 228, 225), "moccasin": (255, 228, 181),
    "navajowhite": (255, 222, 173), "navy": (0, 0, 128), "oldlace": (253, 245, 230),
    "olive": (128, 128, 0), "olivedrab": (107, 142, 35), "orange": (255, 165, 0),
    "orangered": (255, 69, 0), "orchid": (218, 112, 214), "palegoldenrod": (238, 232, 170),
    "palegreen": (152, 251, 152), "paleturquoise": (175, 238, 238),
    "palevioletred": (219, 112, 147), "papayawhip": (255, 239, 213), "peachpuff": (255, 218, 185),
    "peru": (205, 133, 63), "pink": (255, 192, 203), "plum": (221, 160, 221),
    "powderblue": (176, 224, 230), "purple": (128, 0, 128), "rebeccapurple": (102, 51, 153),
    "red": (255, 0, 0), "rosybrown": (188, 143, 143), "royalblue": (65, 105, 225),
    "saddlebrown": (139, 69, 19), "salmon": (250, 128, 114), "sandybrown": (244, 164, 96),
    "seagreen": (46, 139, 87), "seashell": (255, 245, 238), "sienna": (160, 82, 45),
    "silver": (192, 192, 192), "skyblue": (135, 206, 235), "slateblue": (106, 90, 205),
    "slategray": (112, 128, 144), "slategrey": (112, 128, 144), "snow": (255, 250, 250),
    "springgreen": (0, 255, 127), "steelblue": (70, 130, 180), "tan": (210, 180, 140),
    "teal": (0, 128, 128), "thistle": (216, 191, 216), "tomato": (255, 99, 71),
    "turquoise": (64, 224, 208), "violet": (238, 130, 238), "wheat": (245, 222, 179),
    "white": (255, 255, 255), "whitesmoke": (245, 245, 245), "yellow": (255, 255, 0),
    "yellowgreen": (154, 205, 50),
}

# Common names outside CSS that prompts use, with the values web color references give them
# ("light purple" #CBC3E3 is what the real model painted, within 12 levels, for that name).
EXTRA_COLORS: dict[str, RGB] = {
    "light purple": (203, 195, 227),
    "dark purple": (48, 25, 52),
    "navy blue": (0, 0, 128),
}

# Where generators disagree with CSS (see the module docstring).
_OVERRIDES: dict[str, RGB] = {"green": (0, 255, 0)}


def _compact(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


# What the parser understands: compact lower-case name ("lightblue") -> RGB.
COLOR_NAMES: dict[str, RGB] = {
    **{_compact(k): v for k, v in EXTRA_COLORS.items()},
    **CSS_COLORS,
    **_OVERRIDES,
}

_EXACT_NAMES: dict[RGB, list[str]] = {}
for _name in CSS_COLORS:
    _EXACT_NAMES.setdefault(COLOR_NAMES[_name], []).append(_name)

# Words allowed around a color name: "a solid yellow", "the color red", "black color".
_MODIFIERS = frozenset({"solid", "pure", "plain", "flat", "uniform", "opaque", "full", "bright"})
_SUFFIXES = frozenset({"color", "colour", "colored", "coloured"})
_MAX_NAME_WORDS = 4  # "light goldenrod yellow" has 3

_TRIPLE = r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*"
_EXPLICIT = re.compile(
    rf"(?i:rgb)\s*\(\s*(\d+)(?:\s*,\s*|\s+)(\d+)(?:\s*,\s*|\s+)(\d+)\s*\)"
    rf"|\({_TRIPLE}\)|<{_TRIPLE}>|\[{_TRIPLE}\]"
    r"|#([0-9A-Fa-f]+)(?![0-9A-Za-z_])"
)
_PREFIX = re.compile(r"(?i)(?:(?:the|a|an)[ \t]+)?(?:colou?r[ \t]+)?")
_WORDS = re.compile(r"[A-Za-z]+(?:(?:[ \t]+|[ \t]*-[ \t]*)[A-Za-z]+){0,7}")
_WORD = re.compile(r"[A-Za-z]+")

STYLES = ("tuple", "angle", "list", "rgb", "hex", "hex_lower", "hex_short", "name")


def _channels(values: Sequence[str], text: str) -> RGB:
    rgb = tuple(int(v) for v in values)
    if any(c > 255 for c in rgb):
        raise ValueError(f"color {text!r}: channels must be 0..255, got {rgb}")
    return rgb  # type: ignore[return-value]


def _hex(digits: str, text: str, strict: bool) -> RGB:
    n = len(digits)
    if n == 5 and not strict:
        fixed = digits + digits[-1]
        warnings.warn(
            f"malformed hex color {text!r} (5 digits): read as #{fixed.upper()}, the last digit "
            "repeated", MalformedColorWarning, stacklevel=4)
        digits, n = fixed, 6
    if n in (3, 4):  # #RGB, #RGBA (alpha ignored)
        return tuple(int(c * 2, 16) for c in digits[:3])  # type: ignore[return-value]
    if n in (6, 8):  # #RRGGBB, #RRGGBBAA (alpha ignored)
        return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    raise ValueError(
        f"malformed hex color {text!r}: {n} hex digits; expected 3 (#RGB) or 6 (#RRGGBB)"
        + ("" if strict else ", or 4 / 8 with alpha, or 5 (read with the last digit repeated)"))


def match_color(text: str, pos: int = 0, *, strict: bool = False) -> tuple[RGB, int] | None:
    """The color written at `text[pos:]` (after spaces) and where it ends, or None.

    Accepts an optional article / "color" / modifiers before it ("a solid yellow", "the color
    red") and a "color" suffix after a name ("black color"). Raises ValueError for a color
    that is recognizably written but invalid (channel > 255, bad hex length).
    """
    while pos < len(text) and text[pos] in " \t\n":
        pos += 1
    prefix = _PREFIX.match(text, pos)
    start = prefix.end()
    while True:  # modifiers may precede explicit colors too: "solid (255, 0, 0)"
        word = _WORD.match(text, start)
        if not word or word.group().lower() not in _MODIFIERS:
            break
        start = word.end()
        while start < len(text) and text[start] in " \t":
            start += 1
    m = _EXPLICIT.match(text, start)
    if m:
        if m.group(13) is not None:
            digits = m.group(13)
            if len(digits) < 3:  # "#1": a number, not a color
                return None
            return _hex(digits, m.group(0), strict), m.end()
        groups = [g for g in m.groups()[:12] if g is not None]
        return _channels(groups, m.group(0)), m.end()
    return _match_name(text, start)


def _match_name(text: str, pos: int) -> tuple[RGB, int] | None:
    m = _WORDS.match(text, pos)
    if not m:
        return None
    words = [(w.group().lower(), pos + w.end()) for w in _WORD.finditer(m.group())]
    for n in range(min(_MAX_NAME_WORDS, len(words)), 0, -1):
        key = "".join(w for w, _ in words[:n])
        if key in COLOR_NAMES:
            end = words[n - 1][1]
            if n < len(words) and words[n][0] in _SUFFIXES:
                end = words[n][1]
            return COLOR_NAMES[key], end
    return None


def parse_color(text: str, *, strict: bool = False) -> RGB:
    """One color expression (the whole of `text`, JSON quotes allowed) -> (r, g, b) ints."""
    body = text.strip()
    if len(body) >= 2 and body[0] in "\"“":
        body = prompts.unquote(body).strip()
    body = body.rstrip(".")
    hit = match_color(body, 0, strict=strict)
    if hit is None or body[hit[1]:].strip():
        raise ValueError(
            f"not a color: {text!r}; expected (r, g, b), <r, g, b>, [r, g, b], RGB(r, g, b), "
            "#RRGGBB / #RGB, or a color name such as 'red' or 'light blue'")
    return hit[0]


def names_for(rgb: Sequence[int]) -> list[str]:
    """CSS names that parse to exactly `rgb` (empty when none): safe to write into prompts."""
    return list(_EXACT_NAMES.get(tuple(int(c) for c in rgb), ()))


def format_color(rgb: Sequence[int], style: str = "tuple") -> str:
    """`rgb` written in one of `STYLES`; "name" raises ValueError when no exact name exists."""
    r, g, b = as_rgb(rgb)
    if style == "tuple":
        return f"({r}, {g}, {b})"
    if style == "angle":
        return f"<{r}, {g}, {b}>"
    if style == "list":
        return f"[{r}, {g}, {b}]"
    if style == "rgb":
        return f"RGB({r}, {g}, {b})"
    if style == "hex":
        return f"#{r:02X}{g:02X}{b:02X}"
    if style == "hex_lower":
        return f"#{r:02x}{g:02x}{b:02x}"
    if style == "hex_short":
        if all(c % 17 == 0 for c in (r, g, b)):
            return f"#{r // 17:x}{g // 17:x}{b // 17:x}"
        return f"#{r:02x}{g:02x}{b:02x}"
    if style == "name":
        names = names_for((r, g, b))
        if not names:
            raise ValueError(f"no exact color name for {(r, g, b)}")
        return names[0]
    raise ValueError(f"unknown color style {style!r}; expected one of {STYLES}")


def as_rgb(rgb: Sequence[int]) -> RGB:
    vals = [int(c) for c in np.asarray(rgb).reshape(-1)]
    if len(vals) != 3 or any(not 0 <= c <= 255 for c in vals):
        raise ValueError(f"a color must be 3 integers in 0..255, got {rgb!r}")
    return vals[0], vals[1], vals[2]


# ---------------------------------------------------------------------------------------------
# Mappings: "<name> <verb> <color>" statements.

_AUX = r"(?:is|are|was|were|(?:will|should|must|shall)\s+be)"
_PART = (r"(?:represented|depicted|shown|rendered|drawn|painted|colou?red|marked|filled|"
         r"displayed|visuali[sz]ed|labell?ed|encoded|highlighted|indicated|set|assigned|given|"
         r"mapped)")
_VERBS = [re.compile(p, re.I) for p in (
    rf"{_AUX}\s+(?:each\s+|all\s+|also\s+)?{_PART}\s+(?:in|as|by|with|using|to)\b",
    rf"{_AUX}\s+(?:each\s+|all\s+|also\s+)?{_PART}\b",
    rf"{_AUX}\s+in\b",
    rf"{_AUX}\b",
    r":|=|->|→",
)]
_VERB_START = re.compile(r"\b(?:is|are|was|were|will|should|must|shall)\b|:|=|->|→", re.I)
_BOUNDARY = re.compile(r"[.!?;:](?=\s|$)|[,{}\[\]\n]|->|=|→")


def parse_mapping(text: str, *, strict: bool = False) -> dict[str, RGB]:
    """Every `name -> color` statement of a prompt (JSON mappings and sentences), in order.

    Names are returned as written (one leading article dropped; JSON strings decoded). A
    name stated twice keeps its last color. Text without statements gives {}.
    """
    masked, quoted = prompts.mask_quoted(text)
    found: dict[str, RGB] = {}
    cursor = 0
    for start in _VERB_START.finditer(masked):
        if start.start() < cursor:
            continue
        hit = _statement_at(masked, quoted, start.start(), strict)
        if hit is None:
            continue
        rgb, end = hit
        gap = masked[cursor:start.start()]
        cut = max((b.end() for b in _BOUNDARY.finditer(gap)), default=0)
        name = prompts.clean_subject(gap[cut:], quoted)
        if name:
            found.pop(name, None)
            found[name] = rgb
        cursor = end
    return found


def _statement_at(masked: str, quoted: list[str], pos: int, strict: bool):
    for verb in _VERBS:
        m = verb.match(masked, pos)
        if not m:
            continue
        value = _color_after(masked, quoted, m.end(), strict)
        if value is not None:
            return value
    return None


_PLACEHOLDER_AT = re.compile(r"\s*\x00(\d+)\x00")


def _color_after(masked: str, quoted: list[str], pos: int, strict: bool):
    m = _PLACEHOLDER_AT.match(masked, pos)
    if m:  # a quoted value: "red", "#FF0000", "(255, 0, 0)"
        try:
            return parse_color(quoted[int(m.group(1))], strict=strict), m.end()
        except ValueError:
            return None
    return match_color(masked, pos, strict=strict)


LAYOUTS = ("json", "sentences", "list")
_SENTENCES = (
    "The {n} {v} represented by {c}.",
    "The {n} {v} depicted in {c}.",
    "The {n} {v} shown in {c}.",
    "The {n} {v} rendered as {c}.",
    "The {n} {v} painted in {c}.",
    "The {n} {v} in {c}.",
    "The {n} {v} {c}.",
    "The {n} {v} colored {c}.",
)
_NAME_FORMS = ("{}", "{}", "solid {}", "{} color", "the color {}")


def render_mapping(mapping: Mapping[str, Sequence[int]], rng: np.random.Generator, *,
                   layout: str | None = None, style: str | None = None) -> str:
    """`mapping` (name -> RGB) written as prompt text; `parse_mapping` reads it back exactly.

    layout: "json" (`{"cat": (255, 0, 0), ...}`), "sentences" (`The cat is in (255, 0, 0).`)
    or "list" (`cat: (255, 0, 0); dog: ...`); style: one of `STYLES` for every color ("name"
    writes CSS names where one is exact and tuples elsewhere). Both random when None.
    """
    if not mapping:
        raise ValueError("render_mapping needs at least one name -> color entry")
    layout = layout or prompts.choice(rng, LAYOUTS)
    style = style or prompts.choice(rng, STYLES)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown mapping layout {layout!r}; expected one of {LAYOUTS}")
    entries = []
    for name, rgb in mapping.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"mapping names must be non-empty strings, got {name!r}")
        rgb = as_rgb(rgb)
        names = names_for(rgb) if style == "name" else []
        if names:
            form = prompts.choice(rng, _NAME_FORMS)
            value = form.format(prompts.choice(rng, names))
            if layout == "json":
                value = json.dumps(value)
        else:
            value = format_color(rgb, "tuple" if style == "name" else style)
            if layout == "json" and value.startswith("#"):
                value = json.dumps(value)
        entries.append((name, value))
    if layout == "json":
        body = ", ".join(f"{json.dumps(n, ensure_ascii=False)}: {v}" for n, v in entries)
        return "{" + body + "}"
    if layout == "list":
        sep = prompts.choice(rng, ("; ", ", ", "\n"))
        return sep.join(f"{prompts.quote_name(n)}: {v}" for n, v in entries)
    return " ".join(prompts.choice(rng, _SENTENCES).format(
        n=prompts.quote_name(n), v=prompts.verb_for(n), c=v) for n, v in entries)
