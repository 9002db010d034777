"""Safetensors reading / writing and lazy tensor views (vision_banana.convert.safetensors_io,
vision_banana.convert.lazy), cross-checked against the `safetensors` package."""

import json

import ml_dtypes
import numpy as np
import pytest

from vision_banana.convert import lazy, safetensors_io


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((6, 5)).astype(np.float32),
        "b16": rng.standard_normal((4, 3, 2)).astype(ml_dtypes.bfloat16),
        "h": rng.standard_normal((7,)).astype(np.float16),
        "i": np.arange(12, dtype=np.int64).reshape(3, 4),
        "s": np.asarray(3.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }


def test_round_trip_and_safetensors_compat(tmp_path, arrays):
    from safetensors.numpy import load_file, save_file

    ours = tmp_path / "ours.safetensors"
    safetensors_io.save_file(ours, arrays, metadata={"note": "x"})
    theirs = load_file(ours)  # the reference reader accepts our files (bf16 via ml_dtypes)
    for k, v in arrays.items():
        assert theirs[k].dtype == v.dtype and np.array_equal(theirs[k], v), k
    # ... and we read theirs, row ranges included.
    ref = tmp_path / "ref.safetensors"
    save_file({k: v for k, v in arrays.items()}, ref)
    with safetensors_io.open_checkpoint(ref) as ckpt:
        assert set(ckpt) == set(arrays)
        for k, v in arrays.items():
            assert np.array_equal(ckpt[k].read_rows(), v), k
        assert np.array_equal(ckpt["w"].read_rows(2, 5), arrays["w"][2:5])
        assert ckpt["b16"].read_rows(1, 2).dtype == ml_dtypes.bfloat16
        with pytest.raises(IndexError, match="rows"):
            ckpt["w"].read_rows(4, 9)
    with safetensors_io.SafetensorsFile(ours) as f:
        assert f.metadata == {"format": "pt", "note": "x"}


def test_sharded_index_and_errors(tmp_path, arrays):
    specs = [(k, v.shape, v.dtype) for k, v in arrays.items()]
    files = safetensors_io.write_sharded(tmp_path / "m", "model", specs, arrays.__getitem__,
                                         max_shard_bytes=100)
    index = json.loads(files[-1].read_text())
    assert len(files) > 2 and set(index["weight_map"]) == set(arrays)
    with safetensors_io.open_checkpoint(tmp_path / "m") as ckpt:  # folder -> its index
        for k, v in arrays.items():
            assert np.array_equal(ckpt[k].read_rows(), v)
        with pytest.raises(KeyError, match="no tensor 'nope'"):
            ckpt["nope"]
    with pytest.raises(ValueError, match="announced"):
        safetensors_io.write_file(tmp_path / "bad.safetensors", [("w", (2, 2), np.float32)],
                                  lambda name: np.zeros((3, 2), np.float32))
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="header length"):
        safetensors_io.open_checkpoint(tmp_path / "junk.safetensors")


def test_lazy_views_read_only_needed_blocks(tmp_path):
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3))
    safetensors_io.save_file(tmp_path / "t.safetensors", {"q": q, "k": k, "v": v})
    with safetensors_io.open_checkpoint(tmp_path / "t.safetensors") as ckpt:
        rule = lazy.Rule("qkv/kernel", ("q", "k", "v"), "linear", sizes=(4, 4, 4))
        x = rule.lazy(ckpt)
        full = np.concatenate([q, k, v], axis=0).T
        assert x.shape == (3, 12) and np.array_equal(x.numpy(), full)
        assert np.array_equal(x[1:3, 2:9], full[1:3, 2:9])
        x.prefetch(lazy.full_index(x.shape))  # served from memory afterwards
        assert np.array_equal(x[:, 5:6], full[:, 5:6])
        x.release()
        # export inverts load
        parts = rule.export(full)
        assert all(np.array_equal(parts[n], a) for n, a in zip("qkv", (q, k, v)))
        assert rule.export_shapes(full.shape) == {"q": (4, 3), "k": (4, 3), "v": (4, 3)}
        swapped = lazy.Rule("mod/bias", ("q",), swap_halves=True).lazy(ckpt)
        assert np.array_equal(swapped.numpy(), np.concatenate([q[2:], q[:2]]))
        conv = lazy.Rule("attn/kernel", ("q",), "linear_as_conv").lazy(ckpt)
        assert conv.shape == (1, 1, 3, 4) and np.array_equal(conv.numpy()[0, 0], q.T)
        with pytest.raises(ValueError, match="leading sizes"):
            lazy.Rule("x", ("q", "k"), sizes=(4, 5)).lazy(ckpt)
