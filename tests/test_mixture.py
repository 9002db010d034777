"""Mixture order on global indices: shares, per-process slices, resume, bad records."""

import collections
import gc
import json

import numpy as np
import pytest

from data_mix import mixture as mx
from data_mix.iterator import make_iterator
from data_mix.sources.base import RecordError, Source

RES = (8, 8)


class Pictures:
    """Text-to-image records whose pixels and prompt name the record (source tag, index)."""

    name = "pictures"

    def __init__(self, tag: int, n: int = 2000, bad: tuple[int, ...] = ()):
        self.tag, self.n, self.bad = tag, n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise OSError(f"/data/pictures{self.tag}/{i:05d}.png: truncated PNG")
        target = np.zeros((10, 12, 3), np.uint8)
        target[..., 0], target[..., 1], target[..., 2] = self.tag, i % 256, i // 256
        return {"prompt": f"s{self.tag}:{i}", "target": target, "meta": {"dataset": f"p{self.tag}", "id": i}}


class Edits(Pictures):
    """Edit records: input image and target; the flip must move both."""

    def __getitem__(self, i):
        rec = super().__getitem__(i)
        rec["image"] = rec["target"][::-1].copy()
        return rec


class Scenes:
    """Tiny perception records with every field (12x12), cheap enough for 10,000 examples."""

    name = "scenes"

    def __init__(self, n: int = 3000):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[:12, :12]
        semantic = ((xx + i) // 4 % 3).astype(np.int32)
        normals = np.zeros((12, 12, 3), np.float32)
        normals[..., 2] = 1
        masks = np.stack([semantic == 1, (semantic == 2) & (yy < 6)])
        return {"image": rng.integers(0, 255, (12, 12, 3), dtype=np.uint8),
                "depth": (1 + semantic).astype(np.float32), "normals": normals, "semantic": semantic,
                "classes": ["road", "car", "tree"], "instance_masks": masks, "instance_classes": ["car", "tree"],
                "referring": [{"expressions": ["the car"], "mask": masks[0]}],
                "meta": {"dataset": "scenes", "id": i}}


class Flaky(Source):
    """A real `Source` (its own skip_bad marks skipped records in meta["skipped_bad"])."""

    name = "flaky"

    def __init__(self, bad=(), **kw):
        super().__init__(**kw)
        self.bad = set(bad)

    def __len__(self):
        return 2000

    def _load(self, i):
        if i in self.bad:
            raise RecordError(f"/data/flaky/{i:05d}.png: bad CRC")
        return Pictures(7)[i]


def tokenize(prompts):
    """A stand-in for the model tokenizer: bytes, 0-padded to 16."""
    out = np.zeros((len(prompts), 16), np.int32)
    for i, p in enumerate(prompts):
        b = np.frombuffer(p.encode()[:16], np.uint8)
        out[i, :len(b)] = b
    return out


def _config(weights=(0.7, 0.2, 0.1), window=256, **kw):
    c = mx.default_config()
    c.resolution = RES
    c.shuffle_window = window
    for i, w in enumerate(weights):
        cls = Edits if i == 1 else Pictures
        c.sources[f"src{i}"] = mx.source_config(cls, "generation", w, kwargs=dict(tag=i), flip_prob=0.5)
    for k, v in kw.items():
        c[k] = v
    return c


def _iterate(m, n_batches, **kw):
    kw = dict(global_batch_size=8, process_index=0, process_count=1, tokenize=tokenize,
              task_names=["generation"]) | kw
    it = make_iterator(m, **kw)
    batches = []
    for _ in range(n_batches):
        b = next(it)
        b["global_index"] = np.array([meta["global_index"] for meta in it.last_meta])
        batches.append(b)
    state = it.get_state()
    it.close()
    gc.collect()
    return batches, state


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_source_shares_match_weights_over_10k_examples():
    m = mx.Mixture(_config())
    counts = collections.Counter(m.source_of(g).name for g in range(10_000))
    shares = {k: v / 10_000 for k, v in counts.items()}
    assert shares == pytest.approx({"src0": 0.7, "src1": 0.2, "src2": 0.1}, abs=0.02)
    # Each source's order is a permutation per epoch: no repeats before the source is exhausted.
    firsts = [m.position(g) for g in range(3000) if m.position(g)[0] == 2]
    assert len({p for _, p in firsts}) == len(firsts)


TASK_WEIGHTS = {"generation": 0.8, "depth": 0.05, "normals": 0.04, "semantic": 0.04, "instance": 0.03,
                "referring": 0.02, "restoration": 0.02}


@pytest.mark.slow
def test_task_shares_of_10k_built_examples_match_weights():
    c = mx.default_config()
    c.resolution = RES
    for task, w in TASK_WEIGHTS.items():
        cls, kw = (Pictures, dict(tag=0)) if task == "generation" else (Scenes, {})
        c.sources[task] = mx.source_config(cls, task, w, kwargs=kw, flip_prob=0.5)
    m = mx.Mixture(c)
    tasks = collections.Counter(m.example(g)["task"] for g in range(10_000))
    shares = {t: n / 10_000 for t, n in tasks.items()}
    assert shares == pytest.approx(TASK_WEIGHTS, abs=0.02)
    # Much finer than the 2-point bar: shares are exact per mixing period and shuffle window;
    # only the window cut at 10,000 and the interleave's rounding leave a few examples over.
    assert shares == pytest.approx(TASK_WEIGHTS, abs=0.005)


def test_example_depends_only_on_global_index_and_config():
    a, b = mx.Mixture(_config()), mx.Mixture(_config())
    for g in (0, 7, 12345, 10 ** 9):
        ea, eb = a.example(g), b.example(g)
        assert ea["prompt"] == eb["prompt"] and ea["meta"] == eb["meta"]
        np.testing.assert_array_equal(ea["target"], eb["target"])
        assert ea["target"].shape == (*RES, 3) and ea["meta"]["global_index"] == g
    other_seed = mx.Mixture(_config(seed=1))
    assert [other_seed.example(g)["prompt"] for g in range(20)] != [a.example(g)["prompt"] for g in range(20)]


def test_adding_a_source_keeps_the_other_orders():
    """Per-source seeds derive from the source name: a new source does not reshuffle the others."""
    small = mx.Mixture(_config(weights=(0.5, 0.5)))
    big = mx.Mixture(_config(weights=(0.5, 0.4, 0.1)))
    order = lambda m: [m.position(g)[1] for g in range(2000) if m.position(g)[0] == 0][:200]
    assert order(small) == order(big)


def test_processes_see_disjoint_slices_that_make_the_global_batch():
    m = mx.Mixture(_config())
    single, _ = _iterate(m, 3, global_batch_size=8)
    parts = [_iterate(m, 3, global_batch_size=8, process_index=p, process_count=2)[0] for p in range(2)]
    for b in range(3):
        p0, p1 = parts[0][b], parts[1][b]
        assert set(p0["global_index"]).isdisjoint(p1["global_index"])
        np.testing.assert_array_equal(p0["global_index"], np.arange(b * 8, b * 8 + 4))
        for key in single[b]:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), single[b][key], err_msg=key)


def test_batches_follow_the_contract():
    (b,), _ = _iterate(mx.Mixture(_config()), 1, global_batch_size=16)
    assert b["image"].shape == b["target"].shape == (16, *RES, 3)
    assert b["image"].dtype == b["target"].dtype == np.uint8
    assert b["has_image"].dtype == bool and b["tokens"].dtype == np.int32 and b["task_id"].dtype == np.int32
    assert b["tokens"].shape == (16, 16) and (b["task_id"] == 0).all()
    # Text-to-image rows carry a zero image; edit rows (src1) carry theirs.
    assert b["has_image"].any() and not b["has_image"].all()
    assert not b["image"][~b["has_image"]].any()


def test_restored_state_reproduces_next_100_examples():
    m = mx.Mixture(_config())
    run, _ = _iterate(m, 5 + 10, global_batch_size=10)
    it = make_iterator(m, global_batch_size=10, process_index=0, process_count=1, tokenize=tokenize,
                       task_names=["generation"])
    for _ in range(5):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # survives a JSON checkpoint
    it.close()
    assert state["next_batch"] == 5 and state["next_example"] == 50
    fresh = make_iterator(m, global_batch_size=10, process_index=0, process_count=1, tokenize=tokenize,
                          task_names=["generation"])
    fresh.set_state(state)
    for b in range(10):  # the next 100 examples
        got = next(fresh)
        expected = {k: v for k, v in run[5 + b].items() if k != "global_index"}
        _same(got, expected)
    fresh.close()
    # start_batch is the same thing.
    again, _ = _iterate(m, 1, global_batch_size=10, start_batch=5)
    _same(again[0], run[5])


def test_resume_with_another_process_count_continues_at_same_global_position():
    m = mx.Mixture(_config())
    _, state = _iterate(m, 4, global_batch_size=8, process_count=2, process_index=1)
    single, _ = _iterate(m, 5, global_batch_size=8)
    it = make_iterator(m, global_batch_size=8, process_index=0, process_count=1, tokenize=tokenize,
                       task_names=["generation"])
    it.set_state(state)
    _same(next(it), {k: v for k, v in single[4].items() if k != "global_index"})
    it.close()


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    m = mx.Mixture(_config())
    base, _ = _iterate(m, 6, global_batch_size=4)
    workers, state = _iterate(m, 6, global_batch_size=4, num_workers=2)
    for a, b in zip(base, workers):
        _same(a, b)
    assert state["next_batch"] == 6


def test_bad_records_raise_naming_the_file_unless_skipped():
    c = _config(weights=(0.5, 0.5))
    bad = tuple(range(0, 2000, 50))  # 2% of src0
    m = mx.Mixture(c, sources={"src0": Pictures(0, bad=bad)})
    bad_g = next(g for g in range(1000) if m.position(g) == (0, m.position(g)[1]) and m.position(g)[1] in bad)
    with pytest.raises(OSError, match=r"/data/pictures0/\d+\.png: truncated PNG") as info:
        m.example(bad_g)
    assert "skip_bad=True" in "".join(getattr(info.value, "__notes__", []))

    c.skip_bad = True
    m = mx.Mixture(c, sources={"src0": Pictures(0, bad=bad)})
    ex = m.example(bad_g)
    pos = m.position(bad_g)[1]
    assert ex["meta"]["source_index"] == pos + 1  # the next record of the same source
    assert m.bad_records == 1
    assert mx.Mixture(c, sources={"src0": Pictures(0, bad=bad)}).example(bad_g)["prompt"] == ex["prompt"]


def test_bad_fraction_over_limit_stops_with_clear_error():
    c = _config(weights=(0.5, 0.5), skip_bad=True, max_bad_fraction=0.01, min_records_for_bad_check=100)
    m = mx.Mixture(c, sources={"src0": Pictures(0, bad=tuple(range(0, 2000, 50)))})  # 2% of half
    _iterate(m, 20, global_batch_size=10)  # 200 examples, ~1% bad: still within the limit
    m = mx.Mixture(c, sources={"src0": Pictures(0, bad=tuple(range(0, 2000, 10)))})  # 10% of half
    with pytest.raises(mx.BadRecordError, match=r"bad records out of \d+ read .* exceeds max_bad_fraction=1.00%"):
        _iterate(m, 20, global_batch_size=10)


def test_config_errors_are_clear():
    c = _config()
    c.sources.src0.task = "tea"
    with pytest.raises(ValueError, match="source 'src0': unknown task 'tea'"):
        mx.Mixture(c)
    c = _config()
    c.sources.src0 = mx.source_config("data_mix.nowhere:Nothing", "generation", 1.0)
    with pytest.raises(ImportError, match="source 'src0': cannot import 'data_mix.nowhere:Nothing'"):
        mx.Mixture(c)
    c = _config()
    c.shufle_window = 3
    with pytest.raises(KeyError, match=r"unknown mixture config keys \['shufle_window'\]"):
        mx.Mixture(c)
    with pytest.raises(KeyError, match="unknown source config keys"):
        mx.source_config(Pictures, "generation", 1.0, wieght=2)
    m = mx.Mixture(_config())
    with pytest.raises(ValueError, match="multiple of process_count"):
        make_iterator(m, global_batch_size=10, process_index=0, process_count=3, tokenize=tokenize,
                      task_names=["generation"])
    with pytest.raises(ValueError, match=r"mixture tasks \['generation'\] are not in task_names"):
        make_iterator(m, global_batch_size=8, process_index=0, process_count=1, tokenize=tokenize,
                      task_names=["depth"])


def test_records_skipped_by_the_source_count_toward_the_limit():
    c = _config(weights=(0.5, 0.5), max_bad_fraction=0.01, min_records_for_bad_check=100)
    ok = mx.Mixture(c, sources={"src0": Flaky(bad=(3,), skip_bad=True)})
    _iterate(ok, 10, global_batch_size=10)
    flaky = mx.Mixture(c, sources={"src0": Flaky(bad=range(0, 2000, 4), skip_bad=True)})
    with pytest.raises(mx.BadRecordError, match=r"flaky.*/data/flaky/\d+\.png: bad CRC"):
        _iterate(flaky, 20, global_batch_size=10)


def test_cityscapes_mix_builds_from_real_layout(tmp_path):
    """The named real-data mixture on Cityscapes files written in the official layout."""
    from fixtures_datasets import write_cityscapes

    from data_mix import mixtures

    write_cityscapes(tmp_path, split="train", frames_per_city=2, size=(32, 64))
    config = mixtures.get("cityscapes_mix", root=str(tmp_path), resolution=32)
    m = mx.Mixture(config)
    by_source = {}
    for g in range(200):  # the 4-record fixture makes each lookup slow (grain's index shuffle)
        name = m.source_of(g).name
        if name.startswith("cityscapes") and name not in by_source:
            by_source[name] = m.example(g)
    assert set(by_source) == {"cityscapes_semantic", "cityscapes_instance"}
    sem = by_source["cityscapes_semantic"]
    assert sem["task"] == "semantic" and sem["image"].shape == (32, 32, 3)
    assert set(sem["meta"]["spec"]["classes"]) <= set(mx.builders.tasks.get("semantic").parse_prompt(
        sem["prompt"])["classes"])
    assert by_source["cityscapes_instance"]["meta"]["spec"]["target"] in {
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
