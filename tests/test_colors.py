"""Color syntax of prompts: every form parses, every rendering parses back exactly."""

import json

import numpy as np
import pytest

from tasks import colors, prompts


@pytest.mark.parametrize("text, rgb", [
    ("(255, 0, 0)", (255, 0, 0)),
    ("(255,0,0)", (255, 0, 0)),
    ("<255, 255, 0>", (255, 255, 0)),
    ("RGB(88, 50, 82)", (88, 50, 82)),
    ("rgb(88 50 82)", (88, 50, 82)),
    ("[12, 34, 56]", (12, 34, 56)),
    ("#80C000", (128, 192, 0)),
    ("#8c0", (136, 204, 0)),
    ("#10aa05", (16, 170, 5)),
    ("#10aa05ff", (16, 170, 5)),  # alpha ignored
    ('"#10AA05"', (16, 170, 5)),  # a JSON string value
    ("red", (255, 0, 0)),
    ("Cyan", (0, 255, 255)),
    ("lightblue", (173, 216, 230)),
    ("light blue", (173, 216, 230)),
    ("Light-Blue", (173, 216, 230)),
    ("light goldenrod yellow", (250, 250, 210)),
    ("light purple", (203, 195, 227)),
    ("solid yellow", (255, 255, 0)),
    ("a solid yellow", (255, 255, 0)),
    ("black color", (0, 0, 0)),
    ("white colour", (255, 255, 255)),
    ("the color red", (255, 0, 0)),
    ("grey", (128, 128, 128)),
    ("navy blue", (0, 0, 128)),
    ("green", (0, 255, 0)),  # as generators paint it, not CSS #008000
])
def test_parse_color_every_syntax(text, rgb):
    assert colors.parse_color(text) == rgb


def test_css_table_complete_and_parsed():
    assert len(colors.CSS_COLORS) == 148
    assert colors.CSS_COLORS["rebeccapurple"] == (102, 51, 153)
    for name, rgb in colors.CSS_COLORS.items():
        expected = (0, 255, 0) if name == "green" else rgb
        assert colors.parse_color(name) == expected, name
        assert colors.parse_color(name.upper()) == expected, name
    # Rendering only uses names that read back exactly: CSS green (0, 128, 0) has none.
    assert colors.names_for((0, 128, 0)) == []
    assert set(colors.names_for((0, 255, 0))) == {"green", "lime"}
    assert set(colors.names_for((0, 255, 255))) == {"aqua", "cyan"}


def test_malformed_hex_fallback_and_errors():
    with pytest.warns(colors.MalformedColorWarning, match="#40FFC"):
        assert colors.parse_color("#40FFC") == (64, 255, 204)
    with pytest.raises(ValueError, match="#40FFC"):
        colors.parse_color("#40FFC", strict=True)
    with pytest.raises(ValueError, match="#1234567"):
        colors.parse_color("#1234567")
    with pytest.raises(ValueError, match=r"\(256, 0, 0\)"):
        colors.parse_color("(256, 0, 0)")
    with pytest.raises(ValueError, match="blurple"):
        colors.parse_color("blurple")
    # In a sentence the fallback applies and the statement still parses.
    with pytest.warns(colors.MalformedColorWarning):
        found = colors.parse_mapping("The menu is #80C000. The patterns on the wall is #40FFC")
    assert found == {"menu": (128, 192, 0), "patterns on the wall": (64, 255, 204)}
    with pytest.raises(ValueError, match="#40FFC"):
        colors.parse_mapping("The wall is #40FFC.", strict=True)


@pytest.mark.parametrize("text, expected", [
    ("The macaron cakes are represented by (255, 255, 0).", {"macaron cakes": (255, 255, 0)}),
    ("The sky is in (255, 0, 192).", {"sky": (255, 0, 192)}),
    ("A segmentation map image. The stretching cat is rendered in green, the cat that is "
     "cleaning itself is in cyan.",
     {"stretching cat": (0, 255, 0), "cat that is cleaning itself": (0, 255, 255)}),
    ("The background is set to #10aa05. Each ball is represented by a different color.",
     {"background": (16, 170, 5)}),
    ("background is black color", {"background": (0, 0, 0)}),
    ("The background will be black.", {"background": (0, 0, 0)}),
    ("The game control device is represented by a solid yellow.",
     {"game control device": (255, 255, 0)}),
    ("The area is rendered solid white; the other man is rendered in green.",
     {"area": (255, 255, 255), "other man": (0, 255, 0)}),
    ("The pig not in the glass is rendered cyan, and the pig in the glass reflection is "
     "rendered yellow.", {"pig not in the glass": (0, 255, 255),
                          "pig in the glass reflection": (255, 255, 0)}),
    ("The standing and walking people are represented by (255, 192, 128).",
     {"standing and walking people": (255, 192, 128)}),
    ("The tongs are (255, 0, 192).", {"tongs": (255, 0, 192)}),
    ('Background is RGB(88, 50, 82). The "crescent"-shaped croissant is red.',
     {"Background": (88, 50, 82), '"crescent"-shaped croissant': (255, 0, 0)}),
    ("cat: red, dog: (0, 0, 255)\nbird = #00ff00", {"cat": (255, 0, 0), "dog": (0, 0, 255),
                                                  "bird": (0, 255, 0)}),
    ("This image is a per-pixel class labeling of the input.", {}),
])
def test_parse_sentences(text, expected):
    assert colors.parse_mapping(text) == expected


def test_parse_json_mappings_in_every_value_form():
    text = ('Generate a visualization, using this color mapping: {"cat ears": <255, 165, 0>, '
            '"exit sign": "#0000FF", "lock": "pink", "sign, \\"left\\"": [1, 2, 3], '
            '"wall": (4, 5, 6), "floor": RGB(7, 8, 9), "sky": "light purple", '
            '"door": "(10, 11, 12)"}')
    assert colors.parse_mapping(text) == {
        "cat ears": (255, 165, 0), "exit sign": (0, 0, 255), "lock": (255, 192, 203),
        'sign, "left"': (1, 2, 3), "wall": (4, 5, 6), "floor": (7, 8, 9),
        "sky": (203, 195, 227), "door": (10, 11, 12)}
    # Strict JSON reads the same.
    mapping = {"a": [1, 2, 3], "b c": "#FFFFFF"}
    assert colors.parse_mapping(json.dumps(mapping)) == {"a": (1, 2, 3), "b c": (255, 255, 255)}


def test_color_words_inside_names_stay_names():
    text = "The red car is (0, 0, 255). The white line is blue. The green: yellow"
    assert colors.parse_mapping(text) == {"red car": (0, 0, 255), "white line": (0, 0, 255),
                                          "green": (255, 255, 0)}


def test_format_color_every_style_parses_back():
    rng = np.random.default_rng(0)
    for rgb in [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(200)] + [
            (0, 0, 0), (255, 255, 255), (17, 34, 51)]:
        for style in colors.STYLES:
            if style == "name" and not colors.names_for(rgb):
                with pytest.raises(ValueError):
                    colors.format_color(rgb, style)
                continue
            assert colors.parse_color(colors.format_color(rgb, style)) == rgb, (rgb, style)
    assert colors.format_color((136, 204, 0), "hex_short") == "#8c0"
    with pytest.raises(ValueError, match="style"):
        colors.format_color((1, 2, 3), "cmyk")


_ALPHABET = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?'\"()[]{}<>#/&-_+*=@%\\\n\t"
                 "é中→“”")
_WORDS = ["cat", "red", "is", "are", "the", "and", "sky", "light", "blue", "in", "car", "#fff",
          "(1, 2, 3)", "green", "lime", "a", "color", "set", "to", "will", "be", ":", "solid"]


def _random_name(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4))))
    return "".join(rng.choice(_ALPHABET, size=int(rng.integers(1, 12))))


def test_render_parse_round_trip_property():
    """parse(render(m)) == m for random names (punctuation, quotes, color words, unicode) and
    colors, in every layout and style."""
    rng = np.random.default_rng(1234)
    names = list(colors.CSS_COLORS)
    for _ in range(120):
        mapping = {}
        while len(mapping) < int(rng.integers(1, 6)):
            name = _random_name(rng)
            if not name.strip():
                continue
            if rng.random() < 0.3:  # exact CSS colors exercise the "name" style
                mapping[name] = colors.CSS_COLORS[names[int(rng.integers(len(names)))]]
            else:
                mapping[name] = tuple(int(v) for v in rng.integers(0, 256, 3))
        for layout in colors.LAYOUTS:
            for style in colors.STYLES:
                text = colors.render_mapping(mapping, rng, layout=layout, style=style)
                assert colors.parse_mapping(text) == mapping, (text, mapping)


def test_render_mapping_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least one"):
        colors.render_mapping({}, rng)
    with pytest.raises(ValueError, match="non-empty"):
        colors.render_mapping({"  ": (1, 2, 3)}, rng)
    with pytest.raises(ValueError, match="0..255"):
        colors.render_mapping({"cat": (1, 2, 300)}, rng)
    with pytest.raises(ValueError, match="layout"):
        colors.render_mapping({"cat": (1, 2, 3)}, rng, layout="yaml")


def test_quoting_rules():
    assert prompts.quote_name("street lights") == "street lights"
    assert prompts.quote_name("chef's names") == "chef's names"
    for odd in ["the cat", "cat is here", "a.b", "x, y", 'say "hi"', "café", " cat"]:
        assert prompts.quote_name(odd) == json.dumps(odd, ensure_ascii=False)
