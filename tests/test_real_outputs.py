"""Real Vision Banana outputs (semantic, instance, referring): prompts parse to what they state,
images decode plausibly. The material lives outside the repository (`real_outputs` fixture)."""

import json
import warnings

import cv2
import numpy as np
import pytest

from tasks import colors, instance, referring, semantic

# What each prompt states, read by hand: names -> colors, background (None: not stated).
SEMANTIC = {
    "semantic/img2-prompt2.png": ({"macaron cakes": (255, 255, 0), "round plates": (255, 192, 128),
                                   "slice cakes": (64, 192, 64), "flowers": (128, 0, 64),
                                   "tongs": (255, 0, 192)}, None),
    "semantic/img1-prompt1.png": ({"cat ears": (255, 165, 0), "exit sign": (0, 0, 255)},
                                  (125, 0, 125)),
    "semantic/semseg_ocean_1.png": ({"sitting person": (255, 255, 0),
                                     "standing and walking people": (255, 192, 128),
                                     "ocean": (64, 192, 64), "street lights": (128, 0, 64),
                                     "sky": (255, 0, 192), "fence": (0, 0, 255),
                                     "backpack": (255, 0, 0)}, None),
    # "#40FFC" has five digits: read as #40FFCC (the model painted about (67, 255, 203)).
    "semantic/img2-prompt1.png": ({"menu": (128, 192, 0), "dessert": (128, 0, 0),
                                   "patterns on the wall": (64, 255, 204)}, None),
    "semantic/img1-prompt2.png": ({"cat": (255, 0, 0), "lock": (255, 192, 203),
                                   "exit sign": (203, 195, 227)}, (255, 255, 0)),
}
REFERRING = {
    "referring/refseg5_out.png": ({"chef's names in both Chinese and English": (0, 255, 255)},
                                  (0, 0, 0)),
    "referring/refseg3_pred.jpg": ({"stretching cat": (0, 255, 0),
                                    "cat that is cleaning itself": (0, 255, 255)}, None),
    "referring/refseg_4_pred1.png": ({"game control device": (255, 255, 0)}, (0, 0, 0)),
    "referring/refseg1_pred.png": ({"area that corresponds to the man in pink t shirt":
                                    (255, 255, 255), "other man": (0, 255, 0)}, None),
    "referring/refseg_2_out.png": ({"pig not in the glass": (0, 255, 255),
                                    "pig in the glass reflection": (255, 255, 0)}, None),
}
# Instance outputs: (target, background, plausible instance counts). The counts were judged by
# looking at the images: 5 price tags, 8 basketballs, 12 croissants, 11 prices; about 20-26
# garlic and 20 beef pieces; 10 wine brands (+ 2 cut at the borders); 40 balls in a grid.
INSTANCE = {
    "instance/insseg2_1.png": ("garlic", (0, 0, 0), range(18, 29)),
    "instance/insseg_wine_bottle_2.png": ("price on the price tags", (0, 0, 0), range(11, 12)),
    "instance/insseg1_1.png": ("price tag", (0, 0, 0), range(5, 6)),
    "instance/insseg3_1.png": ("basketballs", (16, 170, 5), range(8, 9)),
    "instance/insseg2_2.png": ("beef", (0, 0, 0), range(17, 24)),
    "instance/insseg_wine_bottle_1.png": ("wine bottles", (0, 0, 0), range(10, 14)),
    "instance/insseg1_2.png": ('"crescent"-shaped croissant', (88, 50, 82), range(12, 13)),
    "instance/insseg3_2.png": ("balls", (255, 255, 255), range(36, 44)),
}


def _manifest(root):
    return {e["output"]: e for e in json.loads((root / "manifest.json").read_text())}


def _image(root, rel: str) -> np.ndarray:
    bgr = cv2.imread(str(root / rel), cv2.IMREAD_COLOR)
    assert bgr is not None, root / rel
    return np.ascontiguousarray(bgr[..., ::-1])


def _parse(prompt: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", colors.MalformedColorWarning)
        return semantic.parse_prompt(prompt)


def test_manifest_cases_are_all_covered(real_outputs):
    tasks_of = {k: e["task"] for k, e in _manifest(real_outputs).items()}
    for table, task in [(SEMANTIC, "semantic"), (REFERRING, "referring"),
                        (INSTANCE, "instance")]:
        assert sorted(table) == sorted(k for k, t in tasks_of.items() if t == task)


def test_malformed_hex_prompt(real_outputs):
    prompt = _manifest(real_outputs)["semantic/img2-prompt1.png"]["prompt"]
    with pytest.warns(colors.MalformedColorWarning, match="#40FFC"):
        semantic.parse_prompt(prompt)
    with pytest.raises(ValueError, match="#40FFC"):
        colors.parse_mapping(prompt, strict=True)


@pytest.mark.parametrize("rel", sorted(SEMANTIC) + sorted(REFERRING))
def test_semantic_and_referring_outputs(real_outputs, rel):
    entry = _manifest(real_outputs)[rel]
    stated, background = {**SEMANTIC, **REFERRING}[rel]
    spec = _parse(entry["prompt"])
    assert dict(zip(spec["classes"], map(tuple, spec["colors"].tolist()))) == stated
    # Unnamed classes are painted black when no background is stated.
    assert spec["background"] == (background or (0, 0, 0))
    image = _image(real_outputs, rel)
    # Unmatched: farther than the decode limit from every stated color (background included).
    references = np.vstack([spec["colors"], np.asarray(spec["background"], np.uint8)[None]])
    unmatched = (semantic.nearest_color(image, references, semantic.DEFAULT_MAX_DISTANCE)
                 < 0).mean()
    labels = semantic.decode(image, **spec)
    share = np.bincount(labels.ravel() + 1, minlength=len(stated) + 1)[1:] / labels.size
    print(f"{rel}: unmatched {unmatched:.4%}; class shares {np.round(share, 4).tolist()}")
    assert unmatched < 0.02
    assert np.all(share > 0.0005)  # every named class is found
    if entry["task"] == "referring":
        masks = referring.decode(image, **referring.parse_prompt(entry["prompt"]))
        np.testing.assert_array_equal(masks, labels[None] == np.arange(len(stated))[:, None,
                                                                                    None])


@pytest.mark.parametrize("rel", sorted(INSTANCE))
def test_instance_outputs(real_outputs, rel):
    entry = _manifest(real_outputs)[rel]
    target, background, counts = INSTANCE[rel]
    spec = instance.parse_prompt(entry["prompt"])
    assert spec == {"target": target, "background": background}
    out = instance.decode(_image(real_outputs, rel), **spec)
    print(f"{rel}: {len(out.masks)} instances, scores {np.round(out.scores, 2).tolist()}")
    assert len(out.masks) in counts
    assert np.all((out.scores >= 0) & (out.scores <= 1))
    assert not (out.masks.sum(0) > 1).any()  # one instance per pixel
