"""Pretrained Flux through the standard trainer: a tiny random FLUX.1 Kontext checkpoint
(diffusers layout: transformer, VAE, T5, CLIP, tokenizers, built by diffusers / transformers in
`torch_refs`) fine-tuned 5 steps full and 5 steps LoRA by `train.train_and_evaluate` on the
synthetic mixture at 32 px, exported by `python -m vision_banana.export`, loaded by diffusers'
`FluxTransformer2DModel`, whose forward must equal ours (restored from the workdir) within 1e-4
in float32. Also: what changed (full: every trainable tensor; LoRA: only adapters), checkpoints
without the frozen weights, a bit-identical LoRA resume that re-imports them, and errors when
`init_from` is gone or changed."""

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch_refs
from flax import nnx

from vision_banana import checkpoint, convert, export, lora, models, predict, train
from vision_banana.configs import base, flux_dev, flux_kontext, flux_schnell
from vision_banana.models import generator as gen_lib
from vision_banana.models import stacking

pytestmark = pytest.mark.slow

FAST = "xla_backend_optimization_level=0,xla_cpu_use_fusion_emitters=false"
STEPS, LORA_RANK = 5, 4
B, GRID, L = 2, (4, 4), 8  # forward parity inputs: 4x4 target + 4x4 context tokens


@pytest.fixture(scope="module")
def kontext_ckpt(tmp_path_factory):
    """The tiny pipeline as a FLUX.1-Kontext-dev folder (its model_index names the Kontext
    pipeline; the transformer is the same FluxTransformer2DModel)."""
    folder, _ = torch_refs.tiny_pipeline(tmp_path_factory)
    out = tmp_path_factory.mktemp("FLUX.1-Kontext-tiny")
    shutil.copytree(folder, out, dirs_exist_ok=True)
    index = json.loads((out / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """{generator path: numpy array} of every pretrained parameter (our import of the tiny
    checkpoint, independent of the trainer)."""
    _, _, gen, _ = torch_refs.tiny_generator(tmp_path_factory)
    return _flat(nnx.state(gen, nnx.Param))


def _flat(tree) -> dict[str, np.ndarray]:
    """{per-layer path: array}; stacked blocks (model.scan_layers, the FLUX.1 configs'
    default) are listed per layer, as the imported reference is."""
    tree = stacking.unstack_state(tree)
    return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(tree)}


def _config(ckpt, cache, *, lora_rank=0, steps=STEPS):
    c = flux_kontext.get_config(f"ckpt={ckpt},lora={lora_rank},res=32,batch=2,steps={steps},"
                                "dtype=float32,remat=none,t5_len=32")
    # LoRA: fsdp over 2 devices (frozen weights imported, and re-imported on resume, into
    # shards); full: 1 device, which compiles faster.
    c.mesh.num_devices = 2 if lora_rank else 1
    c.train.update(data_workers=0, log_every=1, checkpoint_every=3, async_checkpoint=False,
                   xla_options=FAST, compilation_cache_dir=str(cache))
    # Visible updates in 5 steps; a fixed horizon so runs of any length share one program.
    c.optim.update(lr=1e-3, warmup_steps=1, decay_steps=10, ema_decay=0.5)
    c.evaluators = ml_collections.ConfigDict()
    return c


def _run(ckpt, workdir, cache, lora_rank):
    state = train.train_and_evaluate(_config(ckpt, cache, lora_rank=lora_rank), workdir)
    return workdir, {k: _flat(state[k]) for k in ("params", "model_state")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def full_run(kontext_ckpt, cache, tmp_path_factory):
    return _run(kontext_ckpt, tmp_path_factory.mktemp("full"), cache, 0)


@pytest.fixture(scope="module")
def lora_run(kontext_ckpt, cache, tmp_path_factory):
    return _run(kontext_ckpt, tmp_path_factory.mktemp("lora"), cache, LORA_RANK)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    n = GRID[0] * GRID[1]
    ids = np.concatenate([np.asarray(gen_lib.position_ids(1, *GRID, i))[0] for i in (0, 1)])
    return dict(img=rng.standard_normal((B, 2 * n, 16)).astype(np.float32), ids=ids,
                txt=rng.standard_normal((B, L, 32)).astype(np.float32),
                y=rng.standard_normal((B, 32)).astype(np.float32),
                t=np.array([0.3, 0.9], np.float32), g=np.array([3.5, 1.0], np.float32))


def _torch_forward(transformer, x):
    import torch

    with torch.no_grad():
        return transformer(
            hidden_states=torch.tensor(x["img"]), encoder_hidden_states=torch.tensor(x["txt"]),
            pooled_projections=torch.tensor(x["y"]), timestep=torch.tensor(x["t"]),
            img_ids=torch.tensor(x["ids"]), txt_ids=torch.zeros(L, 3),
            guidance=torch.tensor(x["g"])).sample.numpy()


@functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0,
                                               "xla_cpu_use_fusion_emitters": False})
def _our_forward(flux, x):
    n = x["img"].shape[1]
    return flux(x["img"], jnp.broadcast_to(x["ids"], (B, n, 3)), x["txt"], jnp.zeros((B, L, 3)),
                x["t"], x["y"], guidance=x["g"])


def _restored_forward(workdir, x, use_ema=True):
    r = predict.restore(workdir, use_ema=use_ema)
    return np.asarray(_our_forward(nnx.merge(r.graphdef, r.params, r.model_state).transformer,
                                   jax.tree.map(jnp.asarray, x)))


def _diffusers_forward(folder, x):
    from diffusers import FluxTransformer2DModel

    return _torch_forward(FluxTransformer2DModel.from_pretrained(folder).eval(), x)


def _bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_configs_read_the_checkpoint(kontext_ckpt):
    c = flux_kontext.get_config(f"ckpt={kontext_ckpt},lora=16,res=64,batch=4")
    assert c.is_locked and c.init_from == str(kontext_ckpt)
    assert c.model.text_encoder.kind == "t5_clip" and c.model.flux.hidden_size == 32
    assert c.model.context_mode == "sequence" and c.model.text_encoder.t5_max_length == 512
    assert (c.model.lora.rank, c.model.lora.alpha) == (16, 16.0)
    assert c.train.trainable == lora.TRAINABLE_PATTERN and c.predict.guidance == 3.5
    assert tuple(c.data.resolution) == (64, 64) and c.train.global_batch_size == 4
    full = flux_dev.get_config(f"ckpt={kontext_ckpt},lora_alpha=8")
    assert full.model.lora.rank == 0 and full.train.trainable == ".*"
    schnell = flux_schnell.get_config(f"ckpt={kontext_ckpt}")
    assert schnell.predict.num_steps == 4 and not schnell.flow.shift
    reference = base.get_config()
    for section in ("train", "optim", "mesh", "predict", "sharding", "flow"):
        assert set(schnell[section]) == set(reference[section]), section
    assert set(schnell.model.lora) == set(reference.model.lora)
    # Without a checkpoint: published shapes (compile / memory checks), nothing to import.
    assert flux_schnell.get_config().model.flux.guidance_embed is False
    with pytest.raises(FileNotFoundError, match="nope"):
        flux_dev.get_config(f"ckpt={kontext_ckpt / 'nope'}")


def test_full_finetune_changes_every_trainable_tensor(full_run, pretrained):
    workdir, final = full_run
    assert final["params"] and all(k.startswith("transformer/") for k in final["params"])
    unchanged = [k for k, v in final["params"].items() if np.array_equal(v, pretrained[k])]
    assert not unchanged, unchanged
    frozen = {k: v for k, v in final["model_state"].items() if k in pretrained}
    assert {k.split("/")[0] for k in frozen} == {"autoencoder", "text_encoder"}
    for k, v in frozen.items():  # T5, CLIP, VAE: bit-identical to the import
        np.testing.assert_array_equal(v, pretrained[k], err_msg=k)
    # The checkpoint omits them and records where they come from; a restore re-imports them.
    step_dir = workdir / "checkpoints" / str(STEPS)
    assert not (step_dir / "model_state").exists() and (step_dir / "frozen").is_dir()
    r = predict.restore(workdir, use_ema=False)
    np.testing.assert_array_equal(np.asarray(r.model_state["text_encoder"]["t5"]["shared"][
        "embedding"][...]), pretrained["text_encoder/t5/shared/embedding"])
    for k, v in _flat(r.params).items():
        np.testing.assert_array_equal(np.asarray(v), final["params"][k], err_msg=k)


def test_full_finetune_exports_to_diffusers(full_run, inputs, tmp_path):
    from diffusers import FluxKontextPipeline

    workdir, _ = full_run
    export.main(["--workdir", str(workdir), "--out", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["step"] == STEPS and record["weights"] == "ema"
    ours = _restored_forward(workdir, inputs)
    diff = np.abs(_diffusers_forward(tmp_path / "out" / "transformer", inputs) - ours).max()
    assert diff <= 1e-4, diff
    print(f"full export: diffusers vs ours {diff:.2e}")
    # The frozen parts came along: the folder loads as a whole Kontext pipeline.
    pipe = FluxKontextPipeline.from_pretrained(tmp_path / "out")
    assert type(pipe).__name__ == "FluxKontextPipeline"


def test_lora_trains_only_adapters(lora_run, full_run, pretrained):
    workdir, final = lora_run
    names = list(final["params"])
    assert names and all(k.endswith(("lora_a", "lora_b")) for k in names)
    assert all(np.any(final["params"][k] != 0) for k in names if k.endswith("lora_b"))  # B: 0 ->
    base = {k: v for k, v in final["model_state"].items() if k in pretrained}
    assert len(base) == len(pretrained)  # every pretrained tensor is frozen, none trained
    for k, v in base.items():
        np.testing.assert_array_equal(v, pretrained[k], err_msg=k)
    # A's moved too: step 3 and step 5 adapters differ.
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    assert ckpt.all_steps() == [3, STEPS]
    ckpt.close()
    r3 = _flat(predict.restore(workdir, 3, use_ema=False).params)
    assert all(not np.array_equal(r3[k], final["params"][k]) for k in names)
    # Checkpoints hold the adapters, their Adam moments and EMA, not the 2.9 MB frozen model.
    lora_bytes = _bytes(workdir / "checkpoints" / str(STEPS))
    full_bytes = _bytes(full_run[0] / "checkpoints" / str(STEPS))
    frozen = json.loads((workdir / "checkpoints" / str(STEPS) / "frozen" / "metadata").read_text())
    assert frozen["num_arrays"] == len(pretrained)
    assert frozen["bytes"] == sum(v.nbytes for v in pretrained.values())
    step_dir = workdir / "checkpoints" / str(STEPS)
    assert sorted(p.name for p in step_dir.iterdir() if p.is_dir()) == [
        "data", "ema", "frozen", "opt_state", "params"]  # no model_state: nothing else to keep
    # Array payload: adapters + 2 Adam moments + EMA; on disk orbax adds its metadata (tens of
    # KB per item, which dominates at this tiny size).
    payload = 4 * sum(v.nbytes for v in final["params"].values())
    full_payload = 4 * sum(v.nbytes for v in full_run[1]["params"].values())
    assert lora_bytes < full_bytes / 2 and lora_bytes < frozen["bytes"] / 2
    print(f"checkpoint on disk: full {full_bytes} B, LoRA {lora_bytes} B (array payload "
          f"{full_payload} / {payload} B); frozen, not written: {frozen['bytes']} B")


def test_lora_export_merges_adapters(lora_run, inputs, tmp_path, tmp_path_factory):
    workdir, _ = lora_run
    export.main(["--workdir", str(workdir), "--out", str(tmp_path / "diffusers")])
    export.main(["--workdir", str(workdir), "--out", str(tmp_path / "bfl"), "--format", "bfl"])
    record = json.loads((tmp_path / "diffusers" / "export.json").read_text())
    assert record["lora_rank_merged"] == LORA_RANK
    ours = _restored_forward(workdir, inputs)
    theirs = _diffusers_forward(tmp_path / "diffusers" / "transformer", inputs)
    diff = np.abs(theirs - ours).max()
    assert diff <= 1e-4, diff
    # The merged adapters matter: the export is not the pretrained transformer ...
    _, comps = torch_refs.tiny_pipeline(tmp_path_factory)
    moved = np.abs(theirs - _torch_forward(comps["transformer"], inputs)).max()
    assert moved > 100 * diff, (moved, diff)
    print(f"LoRA export: diffusers vs ours {diff:.2e}; moved from pretrained {moved:.2e}")
    # ... and the BFL file holds the same merged weights as the diffusers folder.
    params = models.FluxParams(**predict.load_config(workdir).model.flux)
    flux_state = lambda: nnx.state(nnx.eval_shape(  # noqa: E731
        lambda: models.Flux(params, rngs=nnx.Rngs(0))))
    a = convert.load_pretrained(tmp_path / "diffusers" / "transformer", flux_state(),
                                root="transformer", progress=False)
    b = convert.load_pretrained(tmp_path / "bfl" / export.BFL_NAME, flux_state(),
                                root="transformer", axes_dim=tuple(params.axes_dim),
                                progress=False)
    b = dict(nnx.to_flat_state(b))
    for path, x in nnx.to_flat_state(a):
        np.testing.assert_array_equal(np.asarray(x[...]), np.asarray(b[path][...]),
                                      err_msg=str(path))


def test_lora_resume_reimports_frozen_weights(lora_run, kontext_ckpt, cache, tmp_path):
    """Resume from the small step-3 checkpoint: frozen weights re-imported from init_from,
    the run continues bit-identically to the straight 5-step one."""
    workdir, final = lora_run
    resumed = tmp_path / "resumed"
    shutil.copytree(workdir, resumed)
    shutil.rmtree(resumed / "checkpoints" / str(STEPS))
    state = train.train_and_evaluate(_config(kontext_ckpt, cache, lora_rank=LORA_RANK), resumed)
    for k, v in _flat(state["params"]).items():
        assert np.array_equal(v.view(np.uint8), final["params"][k].view(np.uint8)), k
    for k, v in _flat(state["model_state"]).items():
        np.testing.assert_array_equal(v, final["model_state"][k], err_msg=k)


def test_restore_finds_moved_and_names_missing_or_changed_init_from(lora_run, kontext_ckpt,
                                                                     tmp_path):
    workdir, final = lora_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    record_path = run / "checkpoints" / str(STEPS) / "frozen" / "metadata"
    record = json.loads(record_path.read_text())
    # The pretrained checkpoint moved (the record's path is gone): the run's config.init_from
    # holds the same files, so the restore re-imports from there.
    gone = tmp_path / "FLUX.1-Kontext-gone"
    record_path.write_text(json.dumps(dict(record, init_from=str(gone))))
    restored = _flat(predict.restore(run, use_ema=False).model_state)
    for k, v in restored.items():
        np.testing.assert_array_equal(v, final["model_state"][k], err_msg=k)
    # Gone from both places: the error names them.
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, init_from=str(gone) + "-too")))
    with pytest.raises(FileNotFoundError, match="FLUX.1-Kontext-gone.*FLUX.1-Kontext-gone-too"):
        predict.restore(run)
    # A different checkpoint behind the recorded path (a weight file of another size).
    first = next(iter(record["files"]))
    record_path.write_text(json.dumps(dict(record, files={first: 1})))
    with pytest.raises(ValueError, match="changed since the checkpoint"):
        predict.restore(run)
