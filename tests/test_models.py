"""Generator models: Flux transformer (BFL numerics and names), autoencoders, text encoder.

CPU compile time dominates here, so modules are built abstractly (`nnx.eval_shape`) and filled
with host-side random weights (no init graph to compile), every jitted function is compiled once
per shape, and XLA compiles with fast options (`FAST_COMPILE`: same semantics).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from vision_banana import models
from vision_banana.models import generator as gen_lib
from vision_banana.models import layers
from vision_banana.models.autoencoder import AutoencoderKL, AutoEncoderParams, PatchAutoencoder
from vision_banana.models.flux import Flux, FluxParams, count_params
from vision_banana.models.text import ByteTokenizer

# XLA:CPU compiles dominate these tests; -O0 and the classic (non-"fusion emitter") CPU codegen
# cut compile CPU time about 2.7x on the micro model, with the same semantics.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def micro_config(context_mode="sequence", guidance_embed=False) -> ml_collections.ConfigDict:
    """16x16 images -> 16 tokens of 48 channels; hidden 64 (2 heads x 32); 1 + 1 blocks."""
    cfg = models.tiny_model_config()
    cfg.flux.update(dict(hidden_size=64, num_heads=2, depth=1, depth_single_blocks=1,
                         vec_in_dim=32, context_in_dim=32, guidance_embed=guidance_embed,
                         in_channels=96 if context_mode == "channels" else 48))
    cfg.text_encoder.update(dict(width=32, depth=1, num_heads=2, max_length=16, pooled_dim=32))
    cfg.context_mode = context_mode
    return cfg


def _fill_state(module_abstract, seed=0):
    graphdef, state = nnx.split(module_abstract)
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape, dtype = var.shape, var.dtype
        if path[-1] == "scale":
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            v = 0.1 * rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        flat.append((path, var.replace(jnp.asarray(v, dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def random_module(build, seed=0):
    """`build()` with random weights, without compiling an init graph."""
    return _fill_state(nnx.eval_shape(build), seed)


def micro_generator(seed=0, **kw):
    return random_module(lambda: models.build_generator(micro_config(**kw), rngs=nnx.Rngs(0)),
                         seed)


@pytest.fixture(scope="module")
def gen():
    return micro_generator()


def _flux_inputs(b=2, n=16, length=8, channels=48, ctx=32, vec=32, seed=0):
    rng = np.random.default_rng(seed)
    img = jnp.asarray(rng.standard_normal((b, n, channels)), jnp.float32)
    img_ids = gen_lib.position_ids(b, 4, n // 4)
    txt = jnp.asarray(rng.standard_normal((b, length, ctx)), jnp.float32)
    txt_ids = jnp.zeros((b, length, 3), jnp.float32)
    t = jnp.asarray([0.3, 0.8][:b], jnp.float32)
    y = jnp.asarray(rng.standard_normal((b, vec)), jnp.float32)
    return img, img_ids, txt, txt_ids, t, y


# ----------------------------------------------------------------------------------------------
# Tokenizer, packing, autoencoders
# ----------------------------------------------------------------------------------------------


def test_byte_tokenizer_pads_truncates_and_decodes():
    tok = ByteTokenizer(8)
    out = tok(["ab", "héllo wörld", ""])
    assert out.dtype == np.int32 and out.shape == (3, 8)
    np.testing.assert_array_equal(out[0], [ord("a") + 1, ord("b") + 1, 0, 0, 0, 0, 0, 0])
    assert (out[2] == 0).all()
    assert tok.decode(out[:1]) == ["ab"]
    assert tok.decode(tok(["héllo"])) == ["héllo"]  # multi-byte UTF-8 survives
    with pytest.raises(TypeError, match="sequence of prompts"):
        tok("not a list")


def test_pack_matches_bfl_rearrange():
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((2, 6, 4, 5)).astype(np.float32)  # (B, h, w, C)
    # BFL: rearrange(img_nchw, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
    nchw = lat.transpose(0, 3, 1, 2).reshape(2, 5, 3, 2, 2, 2)  # b c h ph w pw
    ref = nchw.transpose(0, 2, 4, 1, 3, 5).reshape(2, 3 * 2, 5 * 4)
    packed, unpacked, ids = fast_jit(lambda z: (
        gen_lib.pack(z), gen_lib.unpack(gen_lib.pack(z), 3, 2),
        gen_lib.position_ids(1, 3, 2, index=1)))(jnp.asarray(lat))
    np.testing.assert_array_equal(np.asarray(packed), ref)
    np.testing.assert_array_equal(np.asarray(unpacked), lat)
    ids = np.asarray(ids)[0]
    np.testing.assert_array_equal(ids[:3], [[1, 0, 0], [1, 0, 1], [1, 1, 0]])


def test_patch_autoencoder_round_trip_is_exact(gen):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ae = PatchAutoencoder(patch_size=2)
    x = jnp.asarray(images, jnp.float32) / 127.5 - 1

    @fast_jit
    def round_trip(gen_state, x, images):
        g = nnx.merge(nnx.graphdef(gen), gen_state)
        tokens = g.encode_images(images)
        return ae.encode(x), ae.decode(ae.encode(x)), tokens, g.decode_tokens(tokens, 16, 16)

    z, x_back, tokens, images_back = round_trip(nnx.state(gen), x, jnp.asarray(images))
    assert z.shape == (2, 8, 8, 12)
    np.testing.assert_array_equal(np.asarray(x_back), np.asarray(x))
    # Scaled to roughly unit variance on uniform noise images (std 0.58 in [-1, 1]).
    assert 0.8 < float(np.std(np.asarray(z))) < 1.5
    assert tokens.shape == (2, 16, 48) and tokens.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(images_back), images)
    with pytest.raises(ValueError, match="multiple of 4"):
        gen.token_grid(18, 16)


def test_autoencoder_kl_tiny_forward_and_names():
    p = AutoEncoderParams(resolution=32, in_channels=3, ch=32, out_ch=3, ch_mult=(1, 1, 1, 1),
                          num_res_blocks=1, z_channels=16, scale_factor=0.3611,
                          shift_factor=0.1159)
    ae = random_module(lambda: AutoencoderKL(p, rngs=nnx.Rngs(0)))
    names = {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(ae, nnx.Param))}
    for name in ["encoder/conv_in/kernel", "encoder/down/0/block/0/norm1/scale",
                 "encoder/down/2/downsample/conv/kernel", "encoder/mid/attn_1/q/kernel",
                 "encoder/mid/block_2/conv2/bias", "encoder/conv_out/kernel",
                 "decoder/up/3/block/1/conv1/kernel", "decoder/up/1/upsample/conv/kernel",
                 "decoder/mid/attn_1/proj_out/kernel", "decoder/norm_out/scale"]:
        assert name in names, name
    assert "encoder/down/3/downsample/conv/kernel" not in names  # coarsest level: none
    assert "decoder/up/0/upsample/conv/kernel" not in names

    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    fwd = fast_jit(lambda gd, st, x, key: (
        (m := nnx.merge(gd, st)).encode(x), m.encode(x, key), m.decode(m.encode(x))))
    z, z_sample, rec = fwd(*nnx.split(ae), images, jax.random.key(0))
    assert z.shape == (2, 4, 4, 16) and rec.shape == (2, 32, 32, 3)
    assert np.isfinite(np.asarray(rec)).all()
    assert not np.allclose(np.asarray(z), np.asarray(z_sample))  # posterior sample != mean


# ----------------------------------------------------------------------------------------------
# Flux: BFL numerics
# ----------------------------------------------------------------------------------------------


def test_timestep_embedding_matches_bfl_formula():
    t = np.array([0.0, 0.25, 1.0], np.float32)
    half = 128
    freqs = np.exp(-np.log(10000.0) * np.arange(half, dtype=np.float32) / half)
    args = (1000.0 * t)[:, None] * freqs[None]
    ref = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
    ours = fast_jit(layers.timestep_embedding)(jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-4)


def test_rope_matches_bfl_formula():
    """BFL: rope -> (..., d/2, 2, 2) matrices [[cos, -sin], [sin, cos]] per pair, applied as
    out = f[..., 0] * x[..., 0] + f[..., 1] * x[..., 1]; axes concatenated along d/2."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, (2, 5, 3)).astype(np.float32)
    axes, theta = (8, 12, 12), 10000
    mats = []
    for i, d in enumerate(axes):
        omega = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float32) / d)
        a = ids[..., i, None] * omega
        mats.append(np.stack([np.cos(a), -np.sin(a), np.sin(a), np.cos(a)], -1)
                    .reshape(*a.shape, 2, 2))
    freqs = np.concatenate(mats, axis=-3)[:, None]  # (B, 1, L, 16, 2, 2)
    x = rng.standard_normal((2, 4, 5, 32)).astype(np.float32)  # BFL (B, H, L, D)
    xr = x.reshape(*x.shape[:-1], -1, 1, 2)
    ref = (freqs[..., 0] * xr[..., 0] + freqs[..., 1] * xr[..., 1]).reshape(x.shape)

    ours = fast_jit(lambda ids, x: layers.apply_rope(x, *layers.EmbedND(32, theta, axes)(ids)))(
        jnp.asarray(ids), jnp.asarray(x.transpose(0, 2, 1, 3)))  # (B, L, H, D)
    np.testing.assert_allclose(np.asarray(ours).transpose(0, 2, 1, 3), ref, atol=1e-5)


@pytest.fixture(scope="module")
def flux_micro():
    p = FluxParams(48, 48, 32, 32, 64, 4.0, 2, 1, 1, (8, 12, 12), 10_000, True, True)
    model = random_module(lambda: Flux(p, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    fwd = fast_jit(lambda st, *a, key_mask=None: nnx.merge(graphdef, st)(
        *a, guidance=jnp.full((a[0].shape[0],), 3.5), key_mask=key_mask))
    return model, functools.partial(fwd, state)


def test_flux_shapes_names_and_errors(flux_micro):
    model, fwd = flux_micro
    out = fwd(*_flux_inputs())
    assert out.shape == (2, 16, 48) and out.dtype == jnp.float32
    names = {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    for name in ["img_in/kernel", "txt_in/bias", "time_in/in_layer/kernel",
                 "time_in/out_layer/kernel", "vector_in/in_layer/kernel",
                 "guidance_in/out_layer/bias", "double_blocks/0/img_mod/lin/kernel",
                 "double_blocks/0/txt_mod/lin/bias", "double_blocks/0/img_attn/qkv/kernel",
                 "double_blocks/0/img_attn/norm/query_norm/scale",
                 "double_blocks/0/txt_attn/norm/key_norm/scale",
                 "double_blocks/0/img_attn/proj/kernel", "double_blocks/0/img_mlp/0/kernel",
                 "double_blocks/0/txt_mlp/2/bias", "single_blocks/0/linear1/kernel",
                 "single_blocks/0/linear2/kernel", "single_blocks/0/norm/key_norm/scale",
                 "single_blocks/0/modulation/lin/kernel", "final_layer/linear/kernel",
                 "final_layer/adaLN_modulation/1/kernel"]:
        assert name in names, name
    # bfloat16 compute, float32 master weights (abstract: shapes and dtypes only).
    p16 = dataclasses.replace(model.params, guidance_embed=False)
    m16 = nnx.eval_shape(lambda: Flux(p16, rngs=nnx.Rngs(0), dtype=jnp.bfloat16))
    assert m16.img_in.kernel.dtype == jnp.float32
    out16 = nnx.eval_shape(lambda m, *a: m(*a), m16, *_flux_inputs())
    assert out16.dtype == jnp.bfloat16 and out16.shape == (2, 16, 48)
    meta = model.double_blocks[0].img_attn.qkv.kernel.get_metadata()
    assert meta["out_sharding"] == ("embed", "heads")
    with pytest.raises(ValueError, match="in_channels"):
        model(jnp.zeros((1, 4, 7)), jnp.zeros((1, 4, 3)), *_flux_inputs(b=1)[2:])
    with pytest.raises(ValueError, match="guidance_embed"):
        model(*_flux_inputs(b=1, n=4))


def test_key_mask_none_equals_all_true_and_masking_removes_keys(flux_micro):
    _, fwd = flux_micro
    model, _ = flux_micro
    img, img_ids, txt, txt_ids, t, y = _flux_inputs()
    ones = jnp.ones((2, txt.shape[1] + img.shape[1]), bool)
    g = jnp.full((2,), 3.5)

    @fast_jit
    def variants(state):
        m = nnx.merge(nnx.graphdef(model), state)
        return (m(img, img_ids, txt, txt_ids, t, y, g),
                m(img, img_ids, txt, txt_ids, t, y, g, key_mask=ones),
                # Masking the last 3 text tokens == dropping them (their outputs are discarded).
                m(img, img_ids, txt, txt_ids, t, y, g, key_mask=ones.at[:, 5:8].set(False)),
                m(img, img_ids, txt[:, :5], txt_ids[:, :5], t, y, g))

    ref, all_true, masked, dropped = map(np.asarray, variants(nnx.state(model)))
    np.testing.assert_allclose(all_true, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(masked, dropped, atol=2e-5)


def test_rope_position_sanity(flux_micro):
    _, fwd = flux_micro
    img, img_ids, txt, txt_ids, t, y = _flux_inputs()
    ref = np.asarray(fwd(img, img_ids, txt, txt_ids, t, y))
    # Permuting image tokens together with their ids permutes the output the same way.
    perm = np.random.default_rng(0).permutation(img.shape[1])
    out = np.asarray(fwd(img[:, perm], img_ids[:, perm], txt, txt_ids, t, y))
    np.testing.assert_allclose(out, ref[:, perm], atol=2e-5)
    # Shifting every id (text included) by a constant keeps all relative positions: same output.
    shift = jnp.asarray([3.0, 5.0, -2.0])
    out = np.asarray(fwd(img, img_ids + shift, txt, txt_ids + shift, t, y))
    np.testing.assert_allclose(out, ref, atol=2e-4)
    # Moving tokens without moving their ids changes the output: positions matter.
    out = np.asarray(fwd(img, img_ids[:, perm], txt, txt_ids, t, y))
    assert np.abs(out - ref).max() > 1e-2


def test_flux_dev_and_kontext_shapes_param_count():
    cfg = models.flux_dev_model_config()
    assert models.flux_kontext_model_config().flux == cfg.flux  # Kontext: same transformer
    params = FluxParams(**cfg.flux.to_dict())
    abstract = nnx.eval_shape(lambda: Flux(params, rngs=nnx.Rngs(0), dtype=jnp.bfloat16))
    assert count_params(abstract) == 11_901_408_320  # FLUX.1 [dev]: 11.9B
    fused = abstract.single_blocks[37].linear1.kernel  # qkv | mlp_in
    assert fused.shape == (3072, 3 * 3072 + 4 * 3072) and fused.dtype == jnp.float32


def test_config_param_counts_and_validation():
    tiny = nnx.eval_shape(lambda: models.build_generator(models.tiny_model_config(),
                                                         rngs=nnx.Rngs(0)))
    small = nnx.eval_shape(lambda: models.build_generator(models.small_model_config(),
                                                          rngs=nnx.Rngs(0)))
    assert count_params(tiny) < 5e6
    assert 100e6 < count_params(small) < 300e6
    bad = micro_config()
    bad.flux.in_channels = 40
    with pytest.raises(ValueError, match=r"model\.flux\.in_channels=40 .* need 48"):
        nnx.eval_shape(lambda: models.build_generator(bad, rngs=nnx.Rngs(0)))
    bad = micro_config()
    bad.autoencoder.patch_size = None
    bad = ml_collections.ConfigDict(bad.to_dict())
    del bad.autoencoder["patch_size"]
    with pytest.raises(ValueError, match=r"missing keys \['patch_size'\]"):
        nnx.eval_shape(lambda: models.build_generator(bad, rngs=nnx.Rngs(0)))
    bad = micro_config()
    bad.context_mode = "stack"
    with pytest.raises(ValueError, match="context_mode='stack'"):
        nnx.eval_shape(lambda: models.build_generator(bad, rngs=nnx.Rngs(0)))


# ----------------------------------------------------------------------------------------------
# Generator: Kontext context, channels mode
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sequence", "channels"])
def test_context_changes_output_and_absent_context_equals_none(mode, gen):
    generator = gen if mode == "sequence" else micro_generator(context_mode=mode)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 16, 48)), jnp.float32)
    t = jnp.asarray([0.5, 0.9])
    tokens = jnp.asarray(generator.tokenizer(["depth map", "segment the cat"]))
    ctx = jnp.asarray(rng.standard_normal((2, 16, 48)), jnp.float32)
    @fast_jit
    def variants(state):
        g = nnx.merge(nnx.graphdef(generator), state)
        txt, y = g.encode_text(tokens)
        return (g.velocity(x, t, txt, y, ctx, jnp.ones(2, bool)),
                g.velocity(x, t, txt, y, -ctx, jnp.ones(2, bool)),
                g.velocity(x, t, txt, y, ctx, jnp.asarray([False, True])),
                g.velocity(x, t, txt, y))

    with_ctx, other_ctx, absent, no_ctx = map(np.asarray, variants(nnx.state(generator)))
    assert with_ctx.shape == (2, 16, 48)
    assert np.abs(with_ctx - other_ctx).max() > 1e-3  # the input image is seen
    np.testing.assert_allclose(absent[0], no_ctx[0], atol=2e-5)  # masked == no context
    np.testing.assert_allclose(absent[1], with_ctx[1], atol=2e-5)


def test_text_encoder_padding_and_empty_prompt(gen):
    tokens = jnp.asarray(gen.tokenizer(["a cat", ""]))

    @fast_jit
    def encode(state, tokens):
        g = nnx.merge(nnx.graphdef(gen), state)
        return g.encode_text(tokens), g.encode_text(tokens[:, :8])

    (states, pooled), (_, pooled_short) = encode(nnx.state(gen), tokens)
    assert states.shape == (2, 16, 32) and pooled.shape == (2, 32)
    assert np.isfinite(np.asarray(states)).all() and np.isfinite(np.asarray(pooled)).all()
    # Padding is masked: the amount of padding after the prompt does not change the pooling.
    np.testing.assert_allclose(np.asarray(pooled_short), np.asarray(pooled), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Remat and sharding
# ----------------------------------------------------------------------------------------------


def test_remat_wraps_blocks_in_checkpoints():
    """remat is a `jax.checkpoint` around each block (gradients are JAX's to keep equal); the
    traced gradient shows one checkpoint per block with the requested policy."""
    p = FluxParams(48, 48, 32, 32, 64, 4.0, 2, 1, 1, (8, 12, 12), 10_000, True, False)
    args = _flux_inputs()
    for remat, count in (("none", 0), ("full", 2), ("dots", 2)):
        model = nnx.eval_shape(lambda: Flux(p, rngs=nnx.Rngs(0), remat=remat))
        graphdef, state = nnx.split(model)
        loss = lambda st: jnp.sum(nnx.merge(graphdef, st)(*args) ** 2)
        jaxpr = jax.make_jaxpr(jax.grad(loss))(state)
        eqns = [e for e in jaxpr.jaxpr.eqns if e.primitive.name.startswith(("checkpoint", "remat"))]
        assert len(eqns) == count, (remat, [e.primitive.name for e in jaxpr.jaxpr.eqns])
        if remat == "dots":
            assert all(e.params["policy"] is jax.checkpoint_policies.checkpoint_dots
                       for e in eqns)
    with pytest.raises(ValueError, match="remat='some'"):
        Flux(p, rngs=nnx.Rngs(0), remat="some")


def test_logical_sharding_on_a_mesh():
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    rules = (("batch", "data"), ("embed", "fsdp"), ("mlp", None), ("heads", None),
             ("latent", None), ("cond", None), ("vocab", None), ("norm", None),
             ("length", None))
    cfg = micro_config()
    # No mesh: names stay metadata, constrain is the identity.
    x = jnp.ones((8, 4, 64))
    assert layers.constrain(x, ("batch", "length", "embed")) is x
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        abstract = nnx.eval_shape(lambda: models.build_generator(cfg, rngs=nnx.Rngs(0)))
        specs = nnx.get_partition_spec(nnx.state(abstract, nnx.Param))
        qkv = specs["transformer"]["double_blocks"][0]["img_attn"]["qkv"]["kernel"]
        assert qkv.get_value() == jax.sharding.PartitionSpec("fsdp", None)
        gen_state = nnx.state(micro_generator())
        shardings = nnx.get_named_sharding(nnx.state(abstract), mesh)
        gen_state = jax.device_put(gen_state, shardings)
        graphdef = nnx.graphdef(abstract)
        tokens = jnp.zeros((8, 16), jnp.int32)

        @fast_jit
        def forward(state, x, t, tokens):
            g = nnx.merge(graphdef, state)
            txt, y = g.encode_text(tokens)
            return g.velocity(x, t, txt, y)

        x = jax.device_put(jnp.ones((8, 16, 48)),
                           jax.sharding.NamedSharding(mesh, jax.P("data")))
        out = forward(gen_state, x, jnp.full((8,), 0.5), tokens)
        assert out.shape == (8, 16, 48) and np.isfinite(np.asarray(out)).all()
