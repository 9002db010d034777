"""FLUX prompt tokenizers from a checkpoint's own files, equal to diffusers' pipelines.

- CLIP (`tokenizer/`): byte-level BPE with `</w>` word ends, lower-cased, `<|startoftext|>` ...
  `<|endoftext|>`, 77 positions. Read from `tokenizer.json` (the `tokenizers` library) or built
  from `vocab.json` + `merges.txt` exactly as transformers' `CLIPTokenizer` builds it.
- T5 (`tokenizer_2/`): SentencePiece unigram, `</s>` appended, `<pad>` = 0. Read from
  `tokenizer.json` (preferred: identical to transformers' `T5TokenizerFast`, special tokens
  included) or from `spiece.model` through `sentencepiece`.

`FluxTokenizer` concatenates both into the one int32 (B, L) array of the batch contract:
T5 ids (t5_max_length: 512 for dev / Kontext, 256 for schnell) then CLIP ids (77), 0 = padding
(CLIP's own padding, `<|endoftext|>` repeated, is written as 0 after the first end token; CLIP is
causal and pooled at that token, so nothing changes).
Files are read on first use, so a model can be built (`nnx.eval_shape`) without them.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from collections.abc import Sequence

import numpy as np

CLIP_PATTERN = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                r"""[^\s\p{L}\p{N}]+""")


def _special(folder: pathlib.Path, key: str, default: str) -> str:
    """A special token's text from tokenizer_config.json / special_tokens_map.json."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return default


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("tokenizers expect a sequence of prompts, got a single str")
    return [str(p) for p in prompts]


class ClipTokenizer:
    """CLIP BPE tokenizer: prompts -> int32 (B, max_length) = [bos, ..., eos, pad, ...].

    Truncation keeps bos and eos (the prompt is cut to max_length - 2 tokens), as transformers.
    """

    def __init__(self, folder: str | os.PathLike):
        from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import BPE

        folder = pathlib.Path(folder)
        self.folder = folder
        bos = _special(folder, "bos_token", "<|startoftext|>")
        eos = _special(folder, "eos_token", "<|endoftext|>")
        unk = _special(folder, "unk_token", "<|endoftext|>")
        if (folder / "tokenizer.json").is_file():
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
            lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
            merges = [tuple(line.split()) for line in lines
                      if line.strip() and not line.startswith("#version")]
            tok = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None,
                                continuing_subword_prefix="", end_of_word_suffix="</w>",
                                fuse_unk=False, unk_token=unk))
            tok.normalizer = normalizers.Sequence(
                [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                 normalizers.Lowercase()])
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False)])
            tok.decoder = decoders.ByteLevel()
            tok.add_special_tokens(list(dict.fromkeys([bos, eos, unk])))
            tok.post_processor = processors.RobertaProcessing(
                (eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)), False, False)
        else:
            raise FileNotFoundError(f"{folder}: no CLIP tokenizer files (tokenizer.json, or "
                                    "vocab.json + merges.txt)")
        self.bos_id, self.eos_id = tok.token_to_id(bos), tok.token_to_id(eos)
        if self.bos_id is None or self.eos_id is None:
            raise ValueError(f"{folder}: tokens {bos!r} / {eos!r} are not in the vocabulary")
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok

    def __call__(self, prompts: Sequence[str], max_length: int = 77,
                 pad_id: int | None = None) -> np.ndarray:
        """int32 (B, max_length); positions after the end token hold `pad_id` (default: the
        end token itself, as transformers' CLIPTokenizer pads)."""
        pad = self.eos_id if pad_id is None else int(pad_id)
        out = np.full((len(prompts), max_length), pad, np.int32)
        self._tok.enable_truncation(max_length)
        for i, enc in enumerate(self._tok.encode_batch(_check_prompts(prompts))):
            out[i, :len(enc.ids)] = enc.ids
        return out


class T5Tokenizer:
    """T5 SentencePiece tokenizer: prompts -> int32 (B, max_length) = [..., </s>, 0, ...]."""

    def __init__(self, folder: str | os.PathLike):
        folder = pathlib.Path(folder)
        self.folder = folder
        self.pad_id = 0
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._tok.no_padding()
            self._sp = None
            eos = _special(folder, "eos_token", "</s>")
            self.eos_id = self._tok.token_to_id(eos)
        elif (folder / "spiece.model").is_file():
            import sentencepiece

            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
            self._tok = None
            self.eos_id = self._sp.eos_id()
        else:
            raise FileNotFoundError(f"{folder}: no T5 tokenizer files (tokenizer.json or "
                                    "spiece.model)")
        if self.eos_id is None or self.eos_id < 0:
            raise ValueError(f"{folder}: the T5 tokenizer has no end-of-sequence token")

    def __call__(self, prompts: Sequence[str], max_length: int = 512) -> np.ndarray:
        prompts = _check_prompts(prompts)
        out = np.zeros((len(prompts), max_length), np.int32)
        if self._tok is not None:
            self._tok.enable_truncation(max_length)
            rows = [enc.ids for enc in self._tok.encode_batch(prompts)]
        else:
            rows = [ids[:max_length - 1] + [self.eos_id] for ids in self._sp.encode(prompts)]
        for i, ids in enumerate(rows):
            out[i, :len(ids)] = ids
        return out


class FluxTokenizer:
    """Prompts -> int32 (B, t5_max_length + clip_max_length): T5 ids, then CLIP ids, 0 = padding.

    folder: the checkpoint root holding `tokenizer/` (CLIP) and `tokenizer_2/` (T5) (diffusers
    layout). Loaded on first call; value semantics (a static field of the generator's graph).
    """

    def __init__(self, folder: str | os.PathLike, t5_max_length: int = 512,
                 clip_max_length: int = 77):
        self.folder = str(folder)
        self.t5_max_length, self.clip_max_length = int(t5_max_length), int(clip_max_length)
        self._loaded: tuple[T5Tokenizer, ClipTokenizer] | None = None
        self._lock = threading.Lock()

    def __eq__(self, other) -> bool:
        return (type(other) is type(self) and other.folder == self.folder
                and other.t5_max_length == self.t5_max_length
                and other.clip_max_length == self.clip_max_length)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.folder, self.t5_max_length, self.clip_max_length))

    def __repr__(self) -> str:
        return (f"FluxTokenizer({self.folder!r}, t5_max_length={self.t5_max_length}, "
                f"clip_max_length={self.clip_max_length})")

    def __getstate__(self):  # picklable for grain workers (the lock and parsed files are not)
        return {"folder": self.folder, "t5_max_length": self.t5_max_length,
                "clip_max_length": self.clip_max_length}

    def __setstate__(self, state):
        self.__init__(state["folder"], state["t5_max_length"], state["clip_max_length"])

    @property
    def length(self) -> int:
        return self.t5_max_length + self.clip_max_length

    def parts(self) -> tuple[T5Tokenizer, ClipTokenizer]:
        """(T5Tokenizer, ClipTokenizer), loaded from the folder on first use."""
        with self._lock:
            if self._loaded is None:
                if not self.folder:
                    raise ValueError("FluxTokenizer has no checkpoint folder: set "
                                     "model.text_encoder.tokenizer_dir")
                root = pathlib.Path(self.folder)
                self._loaded = (T5Tokenizer(root / "tokenizer_2"),
                                ClipTokenizer(root / "tokenizer"))
            return self._loaded

    def special_ids(self) -> dict[str, int]:
        """{"t5_eos_id", "clip_bos_id", "clip_eos_id"} (what the text encoder config needs)."""
        t5, clip = self.parts()
        return {"t5_eos_id": int(t5.eos_id), "clip_bos_id": int(clip.bos_id),
                "clip_eos_id": int(clip.eos_id)}

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        t5, clip = self.parts()
        return np.concatenate([t5(prompts, self.t5_max_length),
                               clip(prompts, self.clip_max_length, pad_id=0)], axis=1)
