"""GenerationSource (JSONL manifest) and the Source behaviours every reader shares:
random access, pickling, grain, bad-record errors and skip_bad."""

import pickle

import fixtures_datasets as fx
import grain
import numpy as np
import pytest

from data_mix.sources import GenerationSource, RecordError


@pytest.fixture
def gen(tmp_path):
    return fx.write_generation(tmp_path)


def test_reads_back_prompts_targets_and_edit_inputs(gen):
    src = GenerationSource(gen["manifest"])
    assert len(src) == len(gen["entries"]) == 4
    for i, e in enumerate(gen["entries"]):
        r = src[i]
        assert r["prompt"] == e["prompt"]
        assert r["target"].dtype == np.uint8 and np.array_equal(r["target"], e["target"])
        if e["image"] is None:
            assert "image" not in r and "image_path" not in r["meta"]
        else:
            assert np.array_equal(r["image"], e["image"])
        assert r["meta"]["id"] == e["id"] and r["meta"]["dataset"] == "generation"
        assert r["meta"]["extra"] == {"source_url": f"http://example.com/{i}"}


def test_random_access_negative_index_and_bounds(gen):
    src = GenerationSource(gen["manifest"])
    fx.assert_records_equal(src[-1], src[len(src) - 1])
    with pytest.raises(IndexError, match="out of range"):
        src[len(src)]


def test_pickled_copy_and_grain_read_the_same_records(gen):
    src = GenerationSource(gen["manifest"])
    copy = pickle.loads(pickle.dumps(src))
    for i in range(len(src)):
        fx.assert_records_equal(src[i], copy[i])
    ds = grain.MapDataset.source(src).map(lambda r: r["meta"]["id"])
    assert list(ds) == [e["id"] for e in gen["entries"]]


def test_malformed_manifest_line_names_file_and_line(tmp_path, gen):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "target": "targets/0000.png"}\n{"prompt": "x", target}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        GenerationSource(bad)
    bad.write_text('{"prompt": "", "target": "t.png"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: 'prompt' must be a non-empty string"):
        GenerationSource(bad)


def test_missing_and_corrupt_files_raise_naming_file_and_source(gen):
    folder = gen["manifest"].parent
    (folder / "targets" / "0001.png").unlink()
    fx.corrupt_file(folder / "inputs" / "0003.png")
    src = GenerationSource(gen["manifest"])
    with pytest.raises(RecordError, match=r"generation/manifest record 1: missing file .*0001\.png"):
        src[1]
    with pytest.raises(RecordError, match=r"record 3: .*0003\.png: not a decodable image"):
        src[3]


def test_skip_bad_returns_next_good_record_marked(gen):
    folder = gen["manifest"].parent
    (folder / "targets" / "0001.png").unlink()
    src = GenerationSource(gen["manifest"], skip_bad=True)
    r = src[1]
    assert r["prompt"] == gen["entries"][2]["prompt"]          # deterministic: the next one
    assert [s["index"] for s in r["meta"]["skipped_bad"]] == [1]
    assert "0001.png" in r["meta"]["skipped_bad"][0]["error"]
    assert src.bad_count == 1 and src.bad_indices == {1}
    assert "skipped_bad" not in src[2]["meta"]
    fx.assert_records_equal({**src[1], "meta": {}}, {**src[1], "meta": {}})   # same again


def test_skip_bad_wraps_around_and_fails_when_all_bad(gen):
    folder = gen["manifest"].parent
    (folder / "targets" / "0003.png").unlink()
    src = GenerationSource(gen["manifest"], skip_bad=True)
    assert src[3]["prompt"] == gen["entries"][0]["prompt"]     # wraps to record 0
    for p in (folder / "targets").iterdir():
        p.unlink()
    with pytest.raises(RecordError, match="all 4 records are bad"):
        src[0]
