"""Export a training run's transformer as a public Flux checkpoint (full or LoRA-merged).

    python -m vision_banana.export --workdir runs/kontext --out exports/kontext-tuned
    python -m vision_banana.export --workdir runs/kontext --out exports/bfl --format bfl \
        --dtype bfloat16 --step 4000 --no_ema

The run's config and checkpoint (latest unless --step; EMA weights unless --no_ema) are restored
as `Predictor.from_workdir` does (frozen pretrained parts re-imported from the run's
`init_from`); LoRA adapters are folded into the kernels (W + alpha/rank A B, float32) as each
tensor is written. What is written under --out:

  diffusers  `transformer/` (config.json + diffusion_pytorch_model*.safetensors, sharded with an
             index above 5 GiB), loadable by `FluxTransformer2DModel.from_pretrained`; when the
             run's `init_from` is a diffusers pipeline folder, also its frozen parts (vae,
             text encoders, tokenizers, scheduler, model_index.json, hard-linked when possible)
             so that `FluxPipeline` / `FluxKontextPipeline.from_pretrained(out)` loads it
  bfl        `flux1-tuned.safetensors` in Black Forest Labs names (the transformer only)

plus `export.json` (workdir, step, weights, LoRA, source, files). Every process of a multi-host
job must run it (each takes part in gathering the sharded tensors); process 0 writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
from collections.abc import Sequence

import jax
from flax import nnx

from vision_banana import cli_flags

BFL_NAME = "flux1-tuned.safetensors"
RECORD = "export.json"


def pipeline_source(init_from: str) -> pathlib.Path | None:
    """The first diffusers pipeline folder (with model_index.json) among `init_from`'s paths."""
    for part in str(init_from or "").split(","):
        path = pathlib.Path(part.strip()).expanduser()
        if part.strip() and (path / "model_index.json").is_file():
            return path
    return None


def export_run(workdir: str | pathlib.Path, out: str | pathlib.Path, *,
               format: str = "diffusers", step: int | None = None, use_ema: bool = True,
               dtype: str | None = None, max_shard_bytes: int = 5 * 2 ** 30) -> dict:
    """Export the transformer of the run in `workdir` to `out` (see module docstring).

    dtype: stored dtype name (e.g. "bfloat16"); None keeps the parameters' (float32).
    Returns the record written to `<out>/export.json`.
    """
    from vision_banana import convert, predict

    if format not in ("diffusers", "bfl"):
        raise ValueError(f"format={format!r}; expected 'diffusers' or 'bfl'")
    r = predict.restore(workdir, step, use_ema=use_ema)
    generator = nnx.merge(r.graphdef, r.params, r.model_state)
    out = pathlib.Path(out)
    init_from = str(r.config.get("init_from") or "")
    lora = r.config.model.get("lora")
    rank = int(lora.rank) if lora is not None else 0
    source = pipeline_source(init_from) if format == "diffusers" else None
    if format == "bfl":
        files = convert.export_transformer(generator, out / BFL_NAME, format="bfl", dtype=dtype)
    elif source is not None:
        convert.export_pipeline(generator, out, source=source, dtype=dtype,
                                max_shard_bytes=max_shard_bytes)
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != RECORD)
    else:
        files = convert.export_transformer(generator, out / "transformer", dtype=dtype,
                                           max_shard_bytes=max_shard_bytes)
    record = {"workdir": str(pathlib.Path(workdir).absolute()), "step": r.step,
              "weights": "ema" if use_ema else "params", "format": format,
              "dtype": dtype or "as trained", "lora_rank_merged": rank,
              "init_from": init_from, "pipeline_source": str(source) if source else None,
              "files": [str(pathlib.Path(f).relative_to(out)) for f in files]}
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / RECORD).write_text(json.dumps(record, indent=2))
    logging.info("exported step %d of %s to %s (%d files)", r.step, workdir, out, len(files))
    return record


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("diffusers", "bfl"), default="diffusers")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA")
    p.add_argument("--dtype", default=None,
                   help="stored dtype, e.g. bfloat16 (default: as trained, float32)")
    args = cli_flags.parse_args(p, argv)  # --no_ema: the old spelling, still accepted

    from launch import distributed

    # Joins the job on a pod / cluster (every process gathers its shards); no-op otherwise.
    distributed.initialize()
    record = export_run(args.workdir, args.out, format=args.format, step=args.step,
                        use_ema=not args.no_ema, dtype=args.dtype)
    if jax.process_index() == 0:
        print(f"exported step {record['step']} ({record['weights']}, LoRA rank "
              f"{record['lora_rank_merged']} merged) to {args.out}: "
              f"{len(record['files'])} files")


if __name__ == "__main__":
    main()
