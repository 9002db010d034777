"""Tiny random PyTorch references (diffusers / transformers), built offline and saved to disk in
the diffusers layout, for the weight-import parity tests.

`tiny_pipeline_dir(tmp_path_factory)` writes, once per test process (cached across test
modules), a complete FLUX-style pipeline folder:

  tokenizer/       CLIP byte-level BPE: vocab.json + merges.txt (merges trained with
                   `tokenizers` on a small corpus; CLIP's layout: 256 byte symbols, the same with
                   `</w>`, merges, then <|startoftext|> <|endoftext|> as the last two ids)
  tokenizer_2/     T5 SentencePiece unigram (`spiece.model` trained with `sentencepiece`) and the
                   `tokenizer.json` transformers converts it to
  text_encoder/    CLIPTextModel, hidden 32, 2 layers (legacy eos_token_id 2, as FLUX's)
  text_encoder_2/  T5EncoderModel, d_model 32, 2 layers, gated-gelu, 8 buckets up to 16
  vae/             AutoencoderKL, channels (32, 64), 1 resnet per level, 4 latent channels
  transformer/     FluxTransformer2DModel, 2 heads x 16 (RoPE 4/6/6), 2 double + 2 single blocks,
                   guidance embedding, saved in shards with an index
  scheduler/       FlowMatchEulerDiscreteScheduler (FLUX.1 dev's dynamic shift)

Weights are random with non-trivial norms / biases (a swapped scale or shift shows).
torch, diffusers and transformers are test-only dependencies.
"""

from __future__ import annotations

import io
import json
import pathlib
import shutil

import numpy as np

CORPUS = [
    "a photo of a cat sitting on a red chair",
    "generate a metric depth map of this scene",
    "generate a surface normal map",
    "generate a semantic segmentation visualization using this color mapping",
    "each person is colored differently; background is black",
    "a dog running on the beach at sunset, high quality photograph",
    "the quick brown fox jumps over the lazy dog",
    "render the image in the rainbow palette: black red yellow green cyan blue violet white",
    "road: (128, 64, 128), sky: #4682b4, car: blue, person: (220, 20, 60)",
    "Two cats and 3 dogs play with 42 balls in a garden full of flowers!",
    "make the sky pink and the grass purple, keep everything else",
    "a cozy cabin in the snowy mountains, warm light from the windows",
]
PROMPTS = ["a photo of a cat", "generate a metric depth map", "",
           "road: (128, 64, 128), sky: #4682b4 -- Two CATS!"]
T5_MAX_LENGTH = 32
_CACHE: dict[str, pathlib.Path] = {}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode symbol table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_tokenizer(folder: pathlib.Path, num_merges: int = 300) -> None:
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    from vision_banana.convert.tokenizers import CLIP_PATTERN

    tok = Tokenizer(BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(),
                                           normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  end_of_word_suffix="</w>")
    tok.train_from_iterator(CORPUS * 4, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"][:num_merges]
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in merges]
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    seen = set(vocab_list)
    for a, b in merges:
        if a + b not in seen:
            vocab_list.append(a + b)
            seen.add(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab_list)},
                                                  ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


def write_t5_tokenizer(folder: pathlib.Path, vocab_size: int = 160) -> None:
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8), model_writer=model, vocab_size=vocab_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    (folder / "spiece.model").write_bytes(model.getvalue())
    # transformers converts the SentencePiece model into its tokenizers-backed T5 tokenizer.
    T5TokenizerFast.from_pretrained(folder, extra_ids=0).save_pretrained(folder)


def randomize(module, seed: int) -> None:
    """Every parameter random: matrices ~ N(0, 1/fan_in), norm weights 1 +- 0.1, the rest
    N(0, 0.1^2)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                value = noise / np.sqrt(fan_in)
            elif "norm" in name:
                value = 1.0 + 0.1 * noise
            else:
                value = 0.1 * noise
            p.copy_(value.to(p.dtype))


def build_components(folder: pathlib.Path) -> dict:
    """The tiny torch modules (also written to `folder`)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    torch.manual_seed(0)
    write_clip_tokenizer(folder / "tokenizer")
    write_t5_tokenizer(folder / "tokenizer_2")
    clip_tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    t5_tok = T5TokenizerFast.from_pretrained(folder / "tokenizer_2")
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok) + 8, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 64],
        layers_per_block=1, act_fn="silu", latent_channels=4, norm_num_groups=32,
        sample_size=32, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
        use_post_quant_conv=False, mid_block_add_attention=True).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6)).eval()
    for i, module in enumerate((clip, t5, vae, transformer)):
        randomize(module, seed=i + 1)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)
    pipe.save_pretrained(folder)
    # Shards + index for the transformer (the layout of the 12B checkpoints).
    shutil.rmtree(folder / "transformer")
    transformer.save_pretrained(folder / "transformer", max_shard_size="100KB")
    return dict(pipe=pipe, clip=clip, t5=t5, vae=vae, transformer=transformer,
                clip_tok=clip_tok, t5_tok=t5_tok)


def tiny_pipeline(tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """(folder, components) of the tiny pipeline, built once per test process."""
    if "pipeline" not in _CACHE:
        folder = tmp_path_factory.mktemp("tiny_flux")
        _CACHE["pipeline"] = (folder, build_components(folder))
    return _CACHE["pipeline"]


def tiny_generator(tmp_path_factory):
    """(folder, components, generator): our Generator built from the tiny pipeline's own
    configs (`convert.model_config`, float32, T5 length 32) with its weights loaded."""
    if "generator" not in _CACHE:
        from flax import nnx

        from vision_banana import convert, models

        folder, comps = tiny_pipeline(tmp_path_factory)
        cfg = convert.model_config(folder, dtype="float32", remat="none",
                                   t5_max_length=T5_MAX_LENGTH)
        graphdef, state = nnx.split(nnx.eval_shape(
            lambda: models.build_generator(cfg, rngs=nnx.Rngs(0))))
        state = convert.load_pretrained(folder, state, progress=False)
        _CACHE["generator"] = (folder, comps, nnx.merge(graphdef, state), cfg)
    return _CACHE["generator"]
