"""Flux transformer and VAE import (diffusers layout and BFL single files) and export, against
diffusers' FluxTransformer2DModel / AutoencoderKL on the same (tiny, random) weights."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch_refs
from flax import nnx

from vision_banana import convert, lora, models
from vision_banana.convert import safetensors_io
from vision_banana.models import generator as gen_lib

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
B, GRID, L = 2, (4, 4), 8


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return torch_refs.tiny_generator(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    n = GRID[0] * GRID[1]
    ids0 = np.asarray(gen_lib.position_ids(1, *GRID, 0))[0]
    ids1 = np.asarray(gen_lib.position_ids(1, *GRID, 1))[0]
    return dict(img=rng.standard_normal((B, 2 * n, 16)).astype(np.float32),
                ids=np.concatenate([ids0, ids1]),
                txt=rng.standard_normal((B, L, 32)).astype(np.float32),
                y=rng.standard_normal((B, 32)).astype(np.float32),
                t=np.array([0.3, 0.9], np.float32), g=np.array([3.5, 1.0], np.float32))


def _torch_forward(transformer, x, n):
    import torch

    with torch.no_grad():
        return transformer(
            hidden_states=torch.tensor(x["img"][:, :n]),
            encoder_hidden_states=torch.tensor(x["txt"]), pooled_projections=torch.tensor(x["y"]),
            timestep=torch.tensor(x["t"]), img_ids=torch.tensor(x["ids"][:n]),
            txt_ids=torch.zeros(L, 3), guidance=torch.tensor(x["g"])).sample.numpy()


@functools.partial(jax.jit, static_argnums=2, compiler_options=FAST)
def _our_forward(flux, x, n):
    return flux(x["img"][:, :n], jnp.broadcast_to(x["ids"][:n], (B, n, 3)), x["txt"],
                jnp.zeros((B, L, 3)), x["t"], x["y"], guidance=x["g"])


@pytest.mark.parametrize("kontext", [False, True], ids=["text2img", "kontext"])
def test_transformer_matches_diffusers(ref, inputs, kontext):
    _, comps, gen, _ = ref
    n = (2 if kontext else 1) * GRID[0] * GRID[1]  # Kontext: context tokens (index 1) appended
    want = _torch_forward(comps["transformer"], inputs, n)
    got = np.asarray(_our_forward(gen.transformer, inputs, n))
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()


def test_vae_matches_diffusers(ref):
    import torch

    _, comps, gen, _ = ref
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    z = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    with torch.no_grad():
        dist = comps["vae"].encode(torch.tensor(x)).latent_dist
        decoded = comps["vae"].decode(torch.tensor(z)).sample.numpy()
    ae = gen.autoencoder
    latents = jax.jit(lambda m, v: m.encode(v), compiler_options=FAST)(ae, x.transpose(0, 2, 3, 1))
    # ours returns the normalized posterior mean: scale * (mean - shift)
    want = 0.3611 * (dist.mean.numpy() - 0.1159)
    assert np.abs(np.asarray(latents).transpose(0, 3, 1, 2) - want).max() <= 1e-4
    images = jax.jit(lambda m, v: m.decoder(v), compiler_options=FAST)(ae, z.transpose(0, 2, 3, 1))
    assert np.abs(np.asarray(images).transpose(0, 3, 1, 2) - decoded).max() <= 1e-4


def _flat(module):
    return {"/".join(map(str, p)): np.asarray(v[...])
            for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def test_bfl_single_files(ref, inputs, tmp_path):
    """flux1-*.safetensors / ae.safetensors (BFL names): written by our exporter, checked by
    diffusers' own LDM VAE converter, loaded back next to the diffusers text encoders."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    folder, comps, gen, _ = ref
    convert.export_transformer(gen, tmp_path / "flux1-tiny.safetensors", format="bfl")
    convert.export_autoencoder(gen, tmp_path / "ae.safetensors", format="bfl")
    with safetensors_io.open_checkpoint(tmp_path / "ae.safetensors") as ae:
        bfl = {k: torch.tensor(ae[k].read_rows()) for k in ae}
    theirs = convert_ldm_vae_checkpoint(bfl, dict(AutoencoderKL.load_config(folder / "vae")))
    want = comps["vae"].state_dict()
    assert set(theirs) == set(want)
    assert all(torch.equal(theirs[k].reshape(want[k].shape), want[k]) for k in want)

    paths = f"{tmp_path / 'flux1-tiny.safetensors'},{tmp_path / 'ae.safetensors'},{folder}"
    layout = convert.discover(paths)
    assert {p: c.format for p, c in layout.components.items()} == {
        "transformer": "bfl", "vae": "bfl", "t5": "diffusers", "clip": "diffusers"}
    cfg = convert.model_config(layout, dtype="float32", remat="none", axes_dim=(4, 6, 6),
                               t5_max_length=torch_refs.T5_MAX_LENGTH)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: models.build_generator(cfg,
                                                                              rngs=nnx.Rngs(0))))
    loaded = nnx.merge(graphdef, convert.load_pretrained(paths, state, axes_dim=(4, 6, 6),
                                                         progress=False))
    a, b = _flat(gen), _flat(loaded)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    n = GRID[0] * GRID[1]
    got = np.asarray(_our_forward(loaded.transformer, inputs, n))
    assert np.abs(got - _torch_forward(comps["transformer"], inputs, n)).max() <= 1e-4
    with pytest.raises(ValueError, match="pass axes_dim"):
        convert.PretrainedLoader(tmp_path / "flux1-tiny.safetensors")


def test_export_round_trip_in_diffusers(ref, inputs, tmp_path):
    """diffusers loads our export (sharded) and reproduces our forward, also with LoRA merged."""
    import torch
    from diffusers import FluxTransformer2DModel

    folder, _, gen, cfg = ref
    files = convert.export_transformer(gen, tmp_path / "full", max_shard_bytes=100_000)
    assert any(f.name.endswith(".index.json") for f in files)
    assert json.loads((tmp_path / "full" / "config.json").read_text())["guidance_embeds"]
    n = 2 * GRID[0] * GRID[1]
    exported = FluxTransformer2DModel.from_pretrained(tmp_path / "full").eval()
    ours = np.asarray(_our_forward(gen.transformer, inputs, n))
    assert np.abs(_torch_forward(exported, inputs, n) - ours).max() <= 1e-4

    # A LoRA-tuned model: adapters with random B (a trained state), exported merged.
    tuned_cfg = cfg.copy_and_resolve_references()
    tuned_cfg.lora = lora.lora_config(rank=4, alpha=8.0)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: models.build_generator(tuned_cfg,
                                                                              rngs=nnx.Rngs(0))))
    state = convert.load_pretrained(folder, state, missing="keep", progress=False)
    rng = np.random.default_rng(3)
    state = jax.tree.map(
        lambda v: (v.replace(jnp.asarray(0.05 * rng.standard_normal(v.shape), v.dtype))
                   if isinstance(v, nnx.LoRAParam) else v),
        state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    tuned = nnx.merge(graphdef, state)
    tuned_out = np.asarray(_our_forward(tuned.transformer, inputs, n))
    assert np.abs(tuned_out - ours).max() > 1e-3  # the adapters do something
    convert.export_transformer(tuned, tmp_path / "lora")
    merged = FluxTransformer2DModel.from_pretrained(tmp_path / "lora").eval()
    assert np.abs(_torch_forward(merged, inputs, n) - tuned_out).max() <= 1e-4

    # A whole pipeline folder: our transformer + the frozen parts of the source.
    from diffusers import FluxPipeline

    convert.export_pipeline(tuned, tmp_path / "pipeline", source=folder)
    pipe = FluxPipeline.from_pretrained(tmp_path / "pipeline")
    assert np.abs(_torch_forward(pipe.transformer.eval(), inputs, n) - tuned_out).max() <= 1e-4
    assert torch.equal(pipe.vae.decoder.conv_out.weight,
                       FluxPipeline.from_pretrained(folder).vae.decoder.conv_out.weight)


def test_mismatched_config_and_unused_tensors(ref):
    folder, _, _, cfg = ref
    small = cfg.copy_and_resolve_references()
    small.flux.depth_single_blocks = 1
    abstract = nnx.state(nnx.eval_shape(lambda: models.build_generator(small, rngs=nnx.Rngs(0))))
    with convert.PretrainedLoader(folder) as src:
        src.load(abstract, progress=False)
        with pytest.raises(ValueError, match="single_transformer_blocks.1"):
            src.check_complete()
    wide = cfg.copy_and_resolve_references()
    wide.flux.update(hidden_size=64, num_heads=4)
    abstract = nnx.state(nnx.eval_shape(lambda: models.build_generator(wide, rngs=nnx.Rngs(0))))
    with pytest.raises(ValueError, match="model expects shape"):
        convert.load_pretrained(folder, abstract, progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        convert.discover(folder / "nope")


def test_load_train_state_for_lora_finetuning(ref):
    """The trainer's state after its random init: pretrained base weights swapped into
    model_state, LoRA adapters (params, ema) and optimizer state left as initialized."""
    import optax

    folder, _, gen, cfg = ref
    tuned_cfg = cfg.copy_and_resolve_references()
    tuned_cfg.lora = lora.lora_config(rank=2)
    model = nnx.eval_shape(lambda: models.build_generator(tuned_cfg, rngs=nnx.Rngs(0)))
    trainable = nnx.All(models.TRAINABLE, lambda path, _: "lora_" in str(path[-1]))
    _, params, model_state = nnx.split(model, trainable, ...)
    fill = lambda tree, value: jax.tree.map(  # noqa: E731  (a materialized "random init")
        lambda v: v.replace(jnp.full(v.shape, value, v.dtype)), tree,
        is_leaf=lambda v: isinstance(v, nnx.Variable))
    params, model_state = fill(params, 0.5), fill(model_state, 7.0)
    tx = optax.adam(1e-3)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
             "ema": jax.tree.map(jnp.copy, params), "model_state": model_state}
    old_kernel = model_state["transformer"]["img_in"]["kernel"][...]
    out = convert.load_train_state(folder, state, progress=False)
    assert old_kernel.is_deleted()  # replaced buffers are freed as loading goes
    base = {"/".join(map(str, p)): v[...] for p, v in nnx.to_flat_state(out["model_state"])}
    for name, want in _flat(gen).items():
        np.testing.assert_array_equal(np.asarray(base[name]), want)
    for key in ("params", "ema"):
        assert all(np.all(np.asarray(v[...]) == 0.5)
                   for _, v in nnx.to_flat_state(out[key]))
    assert out["opt_state"] is state["opt_state"]
    with pytest.raises(KeyError, match="without a pretrained tensor"):
        convert.load_train_state(folder, {"params": fill(nnx.state(model, nnx.Param), 1.0)
                                          | {"extra": nnx.State({"w": nnx.Param(jnp.ones(2))})}},
                                 progress=False)


def test_full_size_model_configs():
    """The published shapes build (abstractly) with the public parameter counts: FLUX.1 dev
    11.9B, T5-XXL encoder 4.76B, CLIP-L text 123M; schnell drops the guidance embedding."""
    dev = nnx.eval_shape(lambda: models.build_generator(models.flux_model_config("dev"),
                                                        rngs=nnx.Rngs(0)))
    assert round(models.count_params(dev.transformer) / 1e9, 2) == 11.90
    assert round(models.count_params(dev.text_encoder.t5) / 1e9, 2) == 4.76
    assert round(models.count_params(dev.text_encoder.clip) / 1e6) == 123
    schnell = models.flux_model_config("schnell")
    assert not schnell.flux.guidance_embed and schnell.text_encoder.t5_max_length == 256
    with pytest.raises(ValueError, match="variant"):
        models.flux_model_config("pro")
