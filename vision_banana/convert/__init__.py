"""Pretrained generators in, tuned generators out.

Import of public Flux checkpoints (FLUX.1 dev / schnell / Kontext dev transformers, the Flux
AutoencoderKL, the T5-XXL and CLIP-L text encoders, their tokenizers) from a diffusers folder or
BFL single files into our NNX modules, tensor by tensor into each parameter's sharding; export
of tuned transformers back to diffusers (or BFL) safetensors; a sampler equal to diffusers'
Flux pipelines. See docs/pretrained.md.

    config.model = convert.model_config("ckpt/FLUX.1-dev")
    with convert.PretrainedLoader("ckpt/FLUX.1-dev") as src:
        state = src.load(abstract_state, shardings)
    convert.export_transformer(generator, "out/transformer")

Only numpy, jax, flax, `tokenizers` and `sentencepiece` are needed here (no torch).
"""

from vision_banana.convert.configs import model_config
from vision_banana.convert.export import export_autoencoder, export_pipeline, export_transformer
from vision_banana.convert.layout import Component, Layout, discover
from vision_banana.convert.load import PretrainedLoader, build_array, load_pretrained, load_train_state
from vision_banana.convert.memory import addressable_bytes, bytes_per_device, memory_report
from vision_banana.convert.safetensors_io import open_checkpoint, save_file, write_sharded
from vision_banana.convert.sampling import pipeline_sigmas, sample
from vision_banana.convert.tokenizers import ClipTokenizer, FluxTokenizer, T5Tokenizer

__all__ = [
    "ClipTokenizer", "Component", "FluxTokenizer", "Layout", "PretrainedLoader", "T5Tokenizer",
    "addressable_bytes", "build_array", "bytes_per_device", "discover", "export_autoencoder",
    "export_pipeline", "export_transformer", "load_pretrained", "load_train_state",
    "memory_report", "model_config", "open_checkpoint", "pipeline_sigmas", "sample",
    "save_file", "write_sharded",
]
