"""Builders make examples whose targets decode back to the record's labels with the prompt's spec."""

import collections

import numpy as np
import pytest

import tasks
from data_mix import builders, degradations
from data_mix.synthetic import SyntheticEdits, SyntheticScenes, SyntheticTextToImage

SIZE = (64, 80)


@pytest.fixture(scope="module")
def scenes():
    src = SyntheticScenes(seed=3, size=SIZE, num_records=50)
    return [src[i] for i in range(6)]


def _check_common(ex, record, task):
    assert ex["task"] == task
    assert ex["target"].dtype == np.uint8 and ex["target"].shape == (*SIZE, 3)
    assert isinstance(ex["prompt"], str) and ex["prompt"]
    assert ex["meta"]["id"] == record["meta"]["id"]
    np.testing.assert_array_equal(ex["image"], record["image"])


def test_semantic_target_decodes_to_labels_with_prompt_colors(scenes):
    codec = tasks.get("semantic")
    seen_subsets, assignments = 0, set()
    for i, rec in enumerate(scenes * 3):
        ex = builders.build("semantic", rec, np.random.default_rng(i))
        _check_common(ex, rec, "semantic")
        spec = ex["meta"]["spec"]
        parsed = codec.parse_prompt(ex["prompt"])
        assert parsed["classes"] == spec["classes"]
        np.testing.assert_array_equal(parsed["colors"], spec["colors"])
        assert tuple(parsed["background"]) == tuple(spec["background"])
        decoded = codec.decode(ex["target"], parsed["colors"], background=parsed["background"])
        expected = np.full(rec["semantic"].shape, -1)
        for j, c in enumerate(spec["class_indices"]):
            expected[rec["semantic"] == c] = j
        np.testing.assert_array_equal(decoded, expected)
        assert [rec["classes"][c] for c in spec["class_indices"]] == spec["classes"]
        present = set(np.unique(rec["semantic"]).tolist()) - {-1}
        seen_subsets += not present <= set(spec["class_indices"])
        assignments.add(tuple(map(tuple, spec["colors"]))[:1])
    assert seen_subsets > 0  # some prompts name only part of the classes
    assert len(assignments) > 3  # colors change from example to example


def test_instance_target_has_one_color_per_instance(scenes):
    codec = tasks.get("instance")
    for i, rec in enumerate(scenes):
        ex = builders.build("instance", rec, np.random.default_rng(i))
        _check_common(ex, rec, "instance")
        spec = ex["meta"]["spec"]
        assert codec.parse_prompt(ex["prompt"])["target"] == spec["target"]
        masks = rec["instance_masks"][[n == spec["target"] for n in rec["instance_classes"]]]
        visible = masks[masks.sum((1, 2)) >= 4]
        assert len(spec["instance_colors"]) == len(visible)
        colors = {tuple(c) for c in ex["target"].reshape(-1, 3).tolist()} - {tuple(spec["background"])}
        assert colors <= {tuple(c) for c in spec["instance_colors"]}
        # Each instance pixel shows its own color unless a smaller instance covers it.
        union = visible.any(0)
        assert (np.any(ex["target"][union] != spec["background"], axis=-1)).all()


def test_instance_record_without_instances_asks_for_a_vocabulary_class(scenes):
    """Seed 1 of the demo mixture drew a scene whose objects were all hidden (a real failure)."""
    rec = dict(scenes[0])
    rec["instance_masks"] = np.zeros((0, *SIZE), bool)
    rec["instance_classes"] = []
    with pytest.raises(ValueError, match="no instances.*vocabulary"):
        builders.build("instance", rec, np.random.default_rng(0))
    ex = builders.build("instance", rec, np.random.default_rng(0), vocabulary=["box", "cone"])
    assert ex["meta"]["spec"]["target"] in ("box", "cone")
    assert ex["meta"]["spec"]["instance_colors"] == []
    assert (ex["target"] == ex["meta"]["spec"]["background"]).all()


def test_referring_target_decodes_to_the_named_masks(scenes):
    codec = tasks.get("referring")
    for i, rec in enumerate(scenes):
        if not rec["referring"]:
            continue
        ex = builders.build("referring", rec, np.random.default_rng(i), max_targets=3)
        _check_common(ex, rec, "referring")
        spec = ex["meta"]["spec"]
        parsed = codec.parse_prompt(ex["prompt"])
        assert parsed["targets"] == spec["targets"]
        masks = codec.decode(ex["target"], parsed["colors"], background=parsed["background"])
        by_expr = {e: np.asarray(o["mask"]) for o in rec["referring"] for e in o["expressions"]}
        covered = np.zeros(SIZE, bool)
        for k in reversed(range(len(spec["targets"]))):  # later targets paint over earlier ones
            want = by_expr[spec["targets"][k]] & ~covered
            np.testing.assert_array_equal(masks[k], want)
            covered |= by_expr[spec["targets"][k]]


def test_depth_rainbow_mostly_and_colormaps_named(scenes):
    codec = tasks.get("depth")
    cmaps = collections.Counter()
    for i in range(60):
        rec = scenes[i % len(scenes)]
        ex = builders.build("depth", rec, np.random.default_rng(i))
        cmap = ex["meta"]["spec"]["colormap"]
        cmaps[cmap] += 1
        assert codec.parse_prompt(ex["prompt"])["colormap"] == cmap
        np.testing.assert_array_equal(ex["target"], codec.encode(rec["depth"], colormap=cmap))
    assert cmaps["rainbow"] >= 35 and set(cmaps) - {"rainbow"} <= set(builders.AUGMENT_COLORMAPS)
    assert len(cmaps) >= 3
    # The rainbow target decodes to the record's metric depth (one decode table: ~1 s to build).
    rec = scenes[0]
    ex = builders.build("depth", rec, np.random.default_rng(0), colormap_prob=0.0)
    d = codec.decode(ex["target"])
    ok = np.isfinite(rec["depth"])
    assert np.abs(d[ok] - rec["depth"][ok]).max() / rec["depth"][ok].max() < 0.01
    assert np.isinf(d[np.isposinf(rec["depth"])]).all()  # sky stays at infinity


def test_depth_invalid_pixels_follow_the_codec(scenes):
    codec = tasks.get("depth")
    rec = dict(scenes[0])
    rec["depth"] = rec["depth"].copy()
    rec["depth"][:8] = np.nan
    ex = builders.build("depth", rec, np.random.default_rng(0), colormap_prob=0.0)
    np.testing.assert_array_equal(ex["target"], codec.encode(rec["depth"], colormap="rainbow"))


def test_sparse_depth_and_normals_are_refused(scenes):
    rec = dict(scenes[0])
    rec["depth"] = np.where(np.arange(SIZE[1]) % 3 == 0, rec["depth"], np.nan).astype(np.float32)
    with pytest.raises(ValueError, match=r"record synthetic/\S+: 66% of 'depth' is invalid"):
        builders.build("depth", rec, np.random.default_rng(0))
    builders.build("depth", rec, np.random.default_rng(0), max_invalid=0.7)
    rec["normals"] = np.zeros_like(rec["normals"])
    with pytest.raises(ValueError, match="100% of 'normals' is invalid"):
        builders.build("normals", rec, np.random.default_rng(0))


def test_normals_target_decodes_to_record_normals(scenes):
    codec = tasks.get("normals")
    rec = scenes[1]
    ex = builders.build("normals", rec, np.random.default_rng(0))
    _check_common(ex, rec, "normals")
    n = codec.decode(ex["target"])
    valid = np.linalg.norm(rec["normals"], axis=-1) > 0.5
    cos = np.clip(np.sum(n[valid] * rec["normals"][valid], -1), -1, 1)
    assert np.degrees(np.arccos(cos)).mean() < 1.0


def test_binary_from_semantic_and_from_mask(scenes):
    codec = tasks.get("binary")
    rec = scenes[2]
    ex = builders.build("binary", rec, np.random.default_rng(1))
    name = ex["meta"]["spec"]["target"]
    assert codec.parse_prompt(ex["prompt"])["target"] == name
    np.testing.assert_array_equal(codec.decode(ex["target"]), rec["semantic"] == rec["classes"].index(name))
    polyp = {"image": rec["image"], "mask": rec["semantic"] == 1, "meta": {"dataset": "kvasir", "id": "7",
                                                                          "mask_name": "polyp"}}
    ex = builders.build("binary", polyp, np.random.default_rng(2))
    assert "polyp" in ex["prompt"]
    np.testing.assert_array_equal(codec.decode(ex["target"]), polyp["mask"])


@pytest.mark.parametrize("kind", degradations.DEGRADATIONS)
def test_restoration_degrades_input_keeps_clean_target(scenes, kind):
    codec = tasks.get("restoration")
    rec = scenes[3]
    ex = builders.build("restoration", rec, np.random.default_rng(0), kinds=(kind,))
    np.testing.assert_array_equal(ex["target"], rec["image"])
    assert ex["image"].shape == rec["image"].shape and ex["image"].dtype == np.uint8
    diff = np.abs(ex["image"].astype(int) - rec["image"]).mean()
    assert diff > 1.0, f"{kind} changed the image by only {diff:.2f} levels"
    assert codec.parse_prompt(ex["prompt"])["kind"] == kind == ex["meta"]["spec"]["kind"]


def test_haze_follows_depth():
    img = np.full((4, 2, 3), 40, np.uint8)
    depth = np.array([[np.inf, 1], [2, 2], [np.nan, 8], [0.5, 0.5]], np.float32)
    out, params = degradations.degrade("dehaze", img, np.random.default_rng(0), depth=depth)
    # Farther is lighter (closer to the airlight); sky becomes the airlight itself.
    assert out[0, 0, 0] == round(params["airlight"])
    assert out[3, 0, 0] < out[1, 0, 0] < out[2, 1, 0]


def test_generation_passes_through():
    t2i = SyntheticTextToImage(seed=0, size=SIZE, num_records=4)[0]
    ex = builders.build("generation", t2i, np.random.default_rng(0))
    assert ex["prompt"] == t2i["prompt"] and "image" not in ex and ex["task"] == "generation"
    edit = SyntheticEdits(seed=0, size=SIZE, num_records=4)[1]
    ex = builders.build("generation", edit, np.random.default_rng(0))
    np.testing.assert_array_equal(ex["image"], edit["image"])
    np.testing.assert_array_equal(ex["target"], edit["target"])
    photo = {"image": edit["image"], "caption": "a room", "meta": {}}
    ex = builders.build("generation", photo, np.random.default_rng(0))
    assert ex["prompt"] == "a room" and "image" not in ex


def test_builders_cover_every_codec_and_name_missing_fields(scenes):
    assert set(builders.names()) == set(tasks.names()) | {"generation"}
    rec = {"image": scenes[0]["image"], "meta": {"dataset": "nyuv2", "id": "0042"}}
    with pytest.raises(ValueError, match=r"record nyuv2/0042 lacks 'depth'"):
        builders.build("depth", rec, np.random.default_rng(0))
    with pytest.raises(KeyError, match="no builder for task 'optical_flow'"):
        builders.build("optical_flow", rec, np.random.default_rng(0))


def test_same_rng_same_example(scenes):
    for task in ("semantic", "instance", "referring", "restoration"):
        a = builders.build(task, scenes[4], np.random.default_rng(9))
        b = builders.build(task, scenes[4], np.random.default_rng(9))
        assert a["prompt"] == b["prompt"]
        np.testing.assert_array_equal(a["target"], b["target"])


def test_restoration_real_pair_is_used_as_it_is(tmp_path):
    """A Rain100L-style pair on disk trains as input -> ground truth; nothing degraded again."""
    import cv2

    from data_mix.sources.paired_folders import RestorationPairsSource

    rng = np.random.default_rng(0)
    rainy, clean = (rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(2))
    for sub, image in (("input", rainy), ("target", clean)):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "rain-001.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    record = RestorationPairsSource(tmp_path, kind="derain")[0]
    ex = builders.build("restoration", record, np.random.default_rng(1))
    np.testing.assert_array_equal(ex["image"], rainy)
    np.testing.assert_array_equal(ex["target"], clean)
    assert tasks.get("restoration").parse_prompt(ex["prompt"])["kind"] == "derain"
    with pytest.raises(ValueError, match="restoration pair with meta kind None"):
        builders.build("restoration", RestorationPairsSource(tmp_path)[0], np.random.default_rng(1))
