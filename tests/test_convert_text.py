"""T5 / CLIP text encoders and tokenizers imported from a (tiny, random) diffusers-layout FLUX
checkpoint, against transformers run on the same files."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch_refs
from flax import nnx

from vision_banana import models
from vision_banana.convert import tokenizers as tok_lib
from vision_banana.models import t5 as t5_lib

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
LONG = "a cat " * 60 + "generate a metric depth map of this scene, " * 3  # > 77 CLIP, > 32 T5


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return torch_refs.tiny_generator(tmp_path_factory)


def _hf_ids(comps, prompts, t5_len=torch_refs.T5_MAX_LENGTH):
    """Token ids exactly as diffusers' FluxPipeline asks its tokenizers for them."""
    kw = dict(padding="max_length", truncation=True, return_tensors="np")
    return (comps["t5_tok"](prompts, max_length=t5_len, **kw).input_ids,
            comps["clip_tok"](prompts, max_length=77, **kw).input_ids)


def test_tokenizers_match_transformers(ref, tmp_path):
    folder, comps, gen, _ = ref
    prompts = torch_refs.PROMPTS + [LONG]
    t5_ids, clip_ids = _hf_ids(comps, prompts)
    ours = gen.tokenizer(prompts)
    assert ours.shape == (len(prompts), torch_refs.T5_MAX_LENGTH + 77) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours[:, :torch_refs.T5_MAX_LENGTH], t5_ids)
    clip_part = ours[:, torch_refs.T5_MAX_LENGTH:]
    eos = comps["clip_tok"].eos_token_id
    for row, hf in zip(clip_part, clip_ids):  # ours pads with 0 after the first end token
        n = int(np.argmax(hf == eos)) + 1
        np.testing.assert_array_equal(row[:n], hf[:n])
        assert not row[n:].any()
    assert clip_ids[-1, -1] == eos and clip_part[-1, -1] == eos  # truncation keeps the end
    # The other file forms: CLIP vocab.json + merges.txt only (FLUX repositories), T5 spiece.model.
    shutil.copytree(folder / "tokenizer", tmp_path / "clip")
    (tmp_path / "clip" / "tokenizer.json").unlink()
    np.testing.assert_array_equal(tok_lib.ClipTokenizer(tmp_path / "clip")(prompts), clip_ids)
    (tmp_path / "t5").mkdir()
    shutil.copy(folder / "tokenizer_2" / "spiece.model", tmp_path / "t5")
    np.testing.assert_array_equal(
        tok_lib.T5Tokenizer(tmp_path / "t5")(prompts, torch_refs.T5_MAX_LENGTH), t5_ids)
    with pytest.raises(FileNotFoundError, match="no CLIP tokenizer files"):
        tok_lib.ClipTokenizer(tmp_path / "t5")
    with pytest.raises(TypeError, match="sequence of prompts"):
        gen.tokenizer("one prompt")


@pytest.mark.parametrize("num_buckets,max_distance,length", [(32, 128, 512), (8, 16, 40)])
def test_relative_position_buckets_match_transformers(num_buckets, max_distance, length):
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    pos = torch.arange(length)
    theirs = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], True,
                                                   num_buckets, max_distance).numpy()
    ours = t5_lib.relative_position_buckets(length, num_buckets, max_distance)
    np.testing.assert_array_equal(ours, theirs)


def test_t5_and_clip_match_transformers(ref):
    import torch

    _, comps, gen, _ = ref
    t5_ids, clip_ids = _hf_ids(comps, torch_refs.PROMPTS + [LONG])
    with torch.no_grad():
        t5_ref = comps["t5"](torch.tensor(t5_ids)).last_hidden_state.numpy()
        clip_ref = comps["clip"](torch.tensor(clip_ids))
    t5_ours = jax.jit(lambda m, x: m(x), compiler_options=FAST)(gen.text_encoder.t5, t5_ids)
    states, pooled = jax.jit(lambda m, x: m(x), compiler_options=FAST)(gen.text_encoder.clip,
                                                                        clip_ids)
    assert np.abs(np.asarray(t5_ours) - t5_ref).max() <= 1e-4
    assert np.abs(np.asarray(states) - clip_ref.last_hidden_state.numpy()).max() <= 1e-4
    assert np.abs(np.asarray(pooled) - clip_ref.pooler_output.numpy()).max() <= 1e-4


@functools.partial(jax.jit, compiler_options=FAST)
def _encode(gen, tokens):
    return gen.encode_text(tokens)


def test_generator_conditioning_empty_prompt_and_cache(ref):
    _, comps, gen, cfg = ref
    prompts = torch_refs.PROMPTS[:2] + [""]
    tokens = gen.tokenizer(prompts)
    txt, y = _encode(gen, tokens)
    assert txt.shape == (3, torch_refs.T5_MAX_LENGTH, 32) and y.shape == (3, 32)
    # A dropped prompt (all-zero row, flow.training_loss / cfg) is the empty prompt "".
    txt0, y0 = _encode(gen, np.zeros_like(tokens[:1]))
    # (batch size changes the float summation order, hence a tolerance)
    np.testing.assert_allclose(np.asarray(txt0[0]), np.asarray(txt[2]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(y0[0]), np.asarray(y[2]), atol=1e-5)

    cached_cfg = cfg.copy_and_resolve_references()
    cached_cfg.text_encoder.prompt_cache = 4
    cached = nnx.eval_shape(lambda: models.build_generator(cached_cfg, rngs=nnx.Rngs(0)))
    cached.text_encoder.t5, cached.text_encoder.clip = gen.text_encoder.t5, gen.text_encoder.clip
    for name in ("cache_tokens", "cache_txt", "cache_y", "cache_used"):
        var = getattr(cached.text_encoder, name)
        var.set_value(jnp.zeros(var.shape, var.dtype))
    graphdef, state = nnx.split(cached.text_encoder)

    @functools.partial(jax.jit, compiler_options=FAST)
    def fill(state, rows):
        encoder = nnx.merge(graphdef, state)
        encoder.fill_prompt_cache(rows)
        return nnx.state(encoder)

    nnx.update(cached.text_encoder, fill(state, tokens[:2]))
    assert np.asarray(cached.text_encoder.cache_used[...]).tolist() == [True, True, False, False]
    for rows in (tokens[[1, 0]], tokens):  # all cached (served by the cache) / one is not
        got_txt, got_y = _encode(cached, rows)
        want_txt, want_y = _encode(gen, rows)
        assert np.abs(np.asarray(got_txt) - np.asarray(want_txt)).max() <= 1e-5
        assert np.abs(np.asarray(got_y) - np.asarray(want_y)).max() <= 1e-5
    with pytest.raises(ValueError, match="prompt cache holds 4 rows"):
        cached.text_encoder.fill_prompt_cache(np.concatenate([tokens] * 2))


def test_frozen_text_encoders_are_not_trainable(ref):
    _, _, gen, _ = ref
    trainable = nnx.state(gen, models.TRAINABLE)
    paths = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(trainable)]
    assert paths and all(p.startswith("transformer/") for p in paths)
