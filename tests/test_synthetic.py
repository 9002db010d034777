"""The procedural synthetic-scene source: exact geometry, consistent labels, edit pairs.

Everything is rendered here, at small sizes, with the real code paths (no mocks).
"""

import dataclasses
import json
import pickle

import numpy as np
import pytest

from data_mix.synthetic import (
    CLASSES,
    KINDS,
    SyntheticEdits,
    SyntheticScenes,
    SyntheticTextToImage,
    captions,
    checks,
    edits,
    palette,
    raycast,
    render,
    sample_scene,
)
from data_mix.synthetic.scene import Scene


def _scene(seed: int, index: int, **kw) -> Scene:
    return sample_scene(np.random.default_rng([seed, index]), **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_depth_gradient_normals_match_analytic_normals(kind):
    """Geometry check per primitive kind: normals from the depth map's gradients agree with
    the analytic normals (median well under 1 degree), on objects and on the room."""
    angles_obj, angles_all = [], []
    for i in range(6):
        scene = _scene(7, i, kinds=(kind,))
        view = render.render(scene, (96, 96), antialias=1, noise=False)
        est = checks.normals_from_depth(view.depth, scene.camera.intrinsics((96, 96)))
        ok = checks.smooth_interior(view)
        ang = checks.angle_deg(est, view.normals)
        angles_all.append(ang[ok])
        angles_obj.append(ang[ok & (view.surface >= raycast.OBJECT0)])
    obj, every = np.concatenate(angles_obj), np.concatenate(angles_all)
    assert obj.size > 500, f"too few object pixels for {kind}: {obj.size}"
    assert np.median(every) < 0.1, np.median(every)
    assert np.median(obj) < 1.0, (kind, np.median(obj))


def test_labels_are_the_nearest_hit_of_an_unculled_trace():
    """Depth, surface ids, semantic and instance masks equal an independent brute-force
    trace: every primitive intersected with every pixel ray (no culling), nearest wins."""
    src = SyntheticScenes(seed=3, size=(40, 56), num_records=8, antialias=2)
    for i in range(len(src)):
        scene = src.scene(i)
        rec = src[i]
        o, d = render.camera_rays(scene.camera, src.size)
        t_room, sid_room = raycast.room_exit(scene.room, o, d)
        ts = np.stack([t_room] + [raycast.hit_distance(p, o, d) for p in scene.objects])
        best = ts.argmin(axis=0)
        depth = ts.min(axis=0).reshape(src.size)
        sid = np.where(best == 0, sid_room, raycast.OBJECT0 + best - 1).reshape(src.size)
        np.testing.assert_allclose(rec["depth"], depth, rtol=1e-6)
        shown = [k for k in range(len(scene.objects)) if (sid == raycast.OBJECT0 + k).any()]
        assert rec["instance_masks"].shape == (len(shown),) + src.size
        for m, k, cls in zip(rec["instance_masks"], shown, rec["instance_classes"]):
            np.testing.assert_array_equal(m, sid == raycast.OBJECT0 + k)
            assert cls == scene.objects[k].kind
            assert (rec["semantic"][m] == CLASSES.index(cls)).all()
        room = sid < raycast.OBJECT0
        expect = np.array([0, 1, 2, 2, 2, 3])[np.minimum(sid, 5)]
        np.testing.assert_array_equal(rec["semantic"][room], expect[room])
        for ref in rec["referring"]:
            assert any((ref["mask"] == m).all() for m in rec["instance_masks"])


def test_record_format_and_value_ranges():
    src = SyntheticScenes(seed=0, size=(48, 64), num_records=30)
    lo, hi = [], []
    for i in range(len(src)):
        rec = src[i]
        h, w = 48, 64
        assert rec["image"].dtype == np.uint8 and rec["image"].shape == (h, w, 3)
        assert rec["depth"].dtype == np.float32 and rec["depth"].shape == (h, w)
        assert rec["normals"].dtype == np.float32 and rec["normals"].shape == (h, w, 3)
        assert rec["semantic"].dtype == np.int32 and rec["semantic"].shape == (h, w)
        assert rec["instance_masks"].dtype == bool
        assert rec["classes"] == list(CLASSES)
        assert isinstance(rec["caption"], str) and rec["caption"]
        sky = rec["semantic"] == CLASSES.index("sky")
        assert np.isinf(rec["depth"][sky]).all() and np.isfinite(rec["depth"][~sky]).all()
        assert (rec["normals"][sky] == 0).all()
        n = rec["normals"][~sky]
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
        # Facing the camera: normal . (camera - point) > 0 in the camera frame.
        meta = rec["meta"]
        k = meta["intrinsics"]
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        ray = np.stack([(u - k["cx"]) / k["fx"], -(v - k["cy"]) / k["fy"], -np.ones((h, w))], -1)
        to_cam = -ray
        assert ((rec["normals"] * to_cam).sum(-1)[~sky] > 0).all()
        json.dumps(meta)
        assert meta["dataset"] == "synthetic" and meta["index"] == i
        assert k["cx"] == (w - 1) / 2 and k["fx"] == k["fy"]
        lo.append(rec["depth"][~sky].min())
        hi.append(rec["depth"][~sky].max())
    # The scenes use the depth encoding's range: near floors ~0.5-1 m, back walls ~10-20 m.
    assert 0.3 < np.min(lo) < 1.0 and 12 < np.max(hi) < 40


def test_records_are_deterministic_and_picklable():
    src = SyntheticScenes(seed=5, size=32, num_records=4)
    a = src[2]
    b = pickle.loads(pickle.dumps(src))[2]
    for key in ("image", "depth", "normals", "semantic", "instance_masks"):
        assert a[key].tobytes() == b[key].tobytes(), key
    assert a["caption"] == b["caption"] and a["meta"] == b["meta"]
    e = SyntheticEdits(seed=5, size=32, num_records=4)
    r1, r2 = e[1], pickle.loads(pickle.dumps(e))[1]
    assert r1["prompt"] == r2["prompt"] and r1["target"].tobytes() == r2["target"].tobytes()


def test_splits_and_seeds_give_different_scenes():
    def key(src, i):
        s = src.scene(i)
        return (s.camera, s.objects)
    train = SyntheticScenes(seed=0, split="train", num_records=50)
    test = SyntheticScenes(seed=0, split="test", num_records=50)
    other = SyntheticScenes(seed=1, split="train", num_records=50)
    keys = [key(train, i) for i in range(50)]
    assert len(set(map(repr, keys))) == 50
    assert not set(map(repr, keys)) & {repr(key(test, i)) for i in range(50)}
    assert not set(map(repr, keys)) & {repr(key(other, i)) for i in range(50)}
    # The generation sources draw their own scenes too.
    t2i = SyntheticTextToImage(seed=0, num_records=50)
    assert not set(map(repr, keys)) & {repr(key(t2i, i)) for i in range(50)}


@pytest.mark.parametrize("index", range(4))
def test_recolor_changes_only_the_object(index):
    """Same camera, light and noise: a recolored object changes no pixel whose center and
    anti-aliasing sub-samples all miss it (anti-aliasing decisions ignore colors)."""
    scene = _scene(11, index)
    size = (64, 80)
    before = render.render(scene, size, antialias=2, shadow_samples=4)
    for k, prim in enumerate(scene.objects):
        new = "blue" if prim.color != "blue" else "red"
        after_scene = edits.replace_object(scene, k, color=new, rgb=palette.OBJECT_COLORS[new])
        after = render.render(after_scene, size, antialias=2, shadow_samples=4)
        changed = (before.image != after.image).any(-1)
        hit, _ = checks.footprints(scene, size, k, 4, 2)
        assert not (changed & ~hit).any()
        mask = before.surface == raycast.OBJECT0 + k
        if mask.sum() > 20:
            assert changed[mask].mean() > 0.5
        np.testing.assert_array_equal(before.depth, after.depth)


@pytest.mark.parametrize("index", range(4))
def test_removal_reveals_background_and_drops_shadow(index):
    scene = _scene(12, index)
    size = (64, 80)
    before = render.render(scene, size, antialias=2, shadow_samples=4)
    for k in range(len(scene.objects)):
        after_scene = edits.drop_object(scene, k)
        after = render.render(after_scene, size, antialias=2, shadow_samples=4)
        hit, shadow = checks.footprints(scene, size, k, 4, 2)
        changed = (before.image != after.image).any(-1)
        assert not (changed & ~checks.dilate(hit | shadow)).any()
        # The disclosed pixels show what lies behind: farther surfaces, never the object.
        mask = before.surface == raycast.OBJECT0 + k
        assert (after.depth[mask] > before.depth[mask]).all()
        assert len(after_scene.objects) == len(scene.objects) - 1


def test_edit_source_pairs():
    src = SyntheticEdits(seed=0, size=48, num_records=40)
    kinds = set()
    for i in range(len(src)):
        rec = src[i]
        assert set(rec) == {"image", "prompt", "target", "meta"}
        assert rec["image"].shape == rec["target"].shape == (48, 48, 3)
        assert rec["prompt"] and rec["meta"]["edit"]["kind"] in edits.EDIT_KINDS
        assert (rec["image"] != rec["target"]).any(), rec["prompt"]
        kinds.add(rec["meta"]["edit"]["kind"])
        json.dumps(rec["meta"])
    assert kinds == set(edits.EDIT_KINDS)


def test_text_to_image_and_captions_name_visible_objects():
    src = SyntheticTextToImage(seed=0, size=64, num_records=20)
    for i in range(len(src)):
        rec = src[i]
        assert "image" not in rec and rec["target"].shape == (64, 64, 3)
        assert rec["caption"] in rec["prompt"]
        scene = src.scene(i)
        view = render.render(scene, src.size, antialias=1)
        vis = captions.Visibility.from_render(view.object_masks(len(scene.objects)), view.depth)
        for k in vis.visible(src.min_caption_pixels):
            prim = scene.objects[k]
            assert prim.color in rec["caption"], (rec["caption"], prim)
            nouns = captions.NOUNS[prim.kind] + ("cube", "boxes", "blocks", "tori")
            assert any(n in rec["caption"] for n in nouns), (rec["caption"], prim.kind)


def test_any_resolution_and_settings():
    scene = _scene(2, 0)
    wide = render.render(scene, (30, 90), antialias=3, shadow_samples=8, noise=False)
    assert wide.image.shape == (30, 90, 3) and wide.depth.shape == (30, 90)
    small = render.render(scene, (30, 90), antialias=1, noise=False)
    np.testing.assert_array_equal(small.depth, wide.depth)  # labels never depend on AA
    np.testing.assert_array_equal(small.surface, wide.surface)
    empty = dataclasses.replace(scene, objects=())  # e.g. after removing the only object
    view = render.render(empty, (24, 24))
    assert (view.surface < raycast.OBJECT0).all()
    vis = captions.Visibility.from_render(view.object_masks(0), view.depth)
    text = captions.caption(empty, vis, np.random.default_rng(0), 1,
                            captions.room_surfaces_shown(view.surface))
    assert text.startswith("an empty room")


def test_argument_errors_name_the_value():
    with pytest.raises(ValueError, match="split='val'"):
        SyntheticScenes(split="val")
    with pytest.raises(ValueError, match="size="):
        SyntheticScenes(size=(4, 4))
    with pytest.raises(ValueError, match="kinds="):
        SyntheticScenes(kinds=("pyramid",))
    with pytest.raises(IndexError):
        SyntheticScenes(num_records=3)[3]
    scene = _scene(0, 0)
    bad = dataclasses.replace(scene.objects[0], kind="pyramid")
    with pytest.raises(ValueError, match="'pyramid'"):
        raycast.hit_distance(bad, np.zeros((3, 1), np.float32), np.ones((3, 2), np.float32))


def test_grain_reads_the_source():
    grain = pytest.importorskip("grain")
    src = SyntheticScenes(seed=1, size=32, num_records=6)
    ds = grain.MapDataset.source(src).map(lambda r: r["image"])
    np.testing.assert_array_equal(ds[4], src[4]["image"])
