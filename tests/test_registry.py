"""Every registered codec follows the protocol and round-trips through its own prompt:

    decode(encode(target, **spec), **parse_prompt(render_prompt(rng, **spec))) ~ target
"""

import inspect

import cv2
import numpy as np
import pytest

import tasks

H, W = 48, 64


def _masks(n: int) -> np.ndarray:
    """bool (n, H, W) disjoint discs and boxes, each at least 3 px thick."""
    out = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        cx, cy = 8 + (i * 14) % (W - 16), 10 + (i * 11) % (H - 20)
        if i % 2:
            out[i, cy - 4:cy + 5, cx - 5:cx + 6] = 1
        else:
            cv2.circle(out[i], (cx, cy), 5, 1, -1)
    taken = np.zeros((H, W), bool)
    for m in out:  # make them disjoint: earlier masks keep their pixels
        m[taken] = 0
        taken |= m.astype(bool)
    return out.astype(bool)


def _cases():
    rng = np.random.default_rng(0)
    depth_m = rng.uniform(0.5, 20.0, (H, W)).astype(np.float32)
    normals = rng.normal(size=(H, W, 3)) + [0, 0, 2.5]  # mostly facing the camera
    normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
    labels = rng.integers(-1, 5, (H // 8, W // 8))
    labels = np.kron(labels, np.ones((8, 8), int)).astype(np.int32)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return {
        "depth": (depth_m, {"colormap": "rainbow"}),
        "normals": (normals, {}),
        "semantic": (labels, {"classes": ["road", "sky", "person's bag", "car, parked", "tree"],
                              "colors": tasks.get("semantic").palette(5),
                              "background": (0, 0, 0)}),
        "instance": (_masks(6), {"target": "croissant", "background": (88, 50, 82)}),
        "referring": (_masks(2), {"targets": ["man in pink t shirt", "the other man"],
                                  "colors": [(255, 255, 255), (0, 255, 0)],
                                  "background": (0, 0, 0)}),
        "binary": (_masks(1)[0], {"target": "polyp"}),
        "restoration": (image, {"kind": "derain"}),
    }


def _check(name: str, decoded, target) -> None:
    if name == "depth":
        rel = np.abs(decoded - target) / target
        assert decoded.dtype == np.float32 and rel.max() < 0.02, rel.max()
    elif name == "normals":
        cos = np.clip((decoded * target).sum(-1), -1, 1)
        assert np.degrees(np.arccos(cos)).max() < 1.0
    elif name == "instance":
        found = {m.tobytes() for m in decoded.masks}
        assert found == {m.tobytes() for m in target}
        assert np.all((decoded.scores >= 0) & (decoded.scores <= 1))
    else:
        np.testing.assert_array_equal(decoded, target)


def test_every_name_resolves_to_a_codec_module():
    assert tasks.names() == sorted(["depth", "normals", "semantic", "instance", "referring",
                                    "binary", "restoration"])
    for name in tasks.names():
        codec = tasks.get(name)
        assert codec.NAME == name
        for fn in ("encode", "decode", "render_prompt", "parse_prompt"):
            assert callable(getattr(codec, fn)), (name, fn)
        first = next(iter(inspect.signature(codec.render_prompt).parameters))
        assert first == "rng", name
    with pytest.raises(KeyError, match="registered: binary, depth"):
        tasks.get("panoptic")


@pytest.mark.parametrize("name", sorted(_cases()))
def test_round_trip_through_own_prompt(name):
    assert name in tasks.names()
    codec = tasks.get(name)
    target, spec = _cases()[name]
    rgb = codec.encode(target, **spec)
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    rng = np.random.default_rng(1)
    for _ in range(8):  # several phrasings
        prompt = codec.render_prompt(rng, **{k: v for k, v in spec.items()})
        assert isinstance(prompt, str) and prompt
        parsed = codec.parse_prompt(prompt)
        assert isinstance(parsed, dict)
        _check(name, codec.decode(rgb, **parsed), target)


@pytest.mark.parametrize("name", sorted(_cases()))
def test_decoders_take_any_image(name):
    codec = tasks.get(name)
    _, spec = _cases()[name]
    parsed = codec.parse_prompt(codec.render_prompt(np.random.default_rng(2), **spec))
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 3), (5, 3, 3), (37, 61, 3)]:
        codec.decode(rng.integers(0, 256, shape, dtype=np.uint8), **parsed)
    assert isinstance(codec.parse_prompt("Generate a photo of a cat on a sofa."), dict)


@pytest.mark.parametrize("name", ["semantic", "instance", "referring", "binary", "restoration"])
def test_discrete_decoders_take_a_whole_builder_spec(name):
    """Builders keep bookkeeping next to the decode arguments in meta["spec"] (class_indices,
    instance_colors, params); evaluation passes the dict as is."""
    codec = tasks.get(name)
    target, spec = _cases()[name]
    rgb = codec.encode(target, **spec)
    parsed = codec.parse_prompt(codec.render_prompt(np.random.default_rng(4), **spec))
    _check(name, codec.decode(rgb, **parsed, class_indices=[3, 1], params={"sigma": 2.0}),
           target)
