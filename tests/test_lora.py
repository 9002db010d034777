"""LoRA adapters (vision_banana.lora): placement by pattern, zero-start, sharding names, the
trainable split the trainer uses, merging."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vision_banana import lora, models
from vision_banana.models import generator as gen_lib
from vision_banana.models.flux import Flux, FluxParams

FAST = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
PARAMS = FluxParams(in_channels=16, out_channels=16, vec_in_dim=8, context_in_dim=8,
                    hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=1, depth_single_blocks=1,
                    axes_dim=(4, 6, 6), theta=10_000, qkv_bias=True, guidance_embed=False)


def random_flux(seed=0) -> Flux:
    """A Flux with every parameter random (a fresh one is adaLN-zero: output 0)."""
    model = nnx.eval_shape(lambda: Flux(PARAMS, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    for _, var in nnx.iter_graph(model):
        if isinstance(var, nnx.Param):
            var.set_value(jnp.asarray(0.3 * rng.standard_normal(var.shape), var.dtype))
    return model


@functools.partial(jax.jit, compiler_options=FAST)
def forward(model, x):
    b, n = x.shape[:2]
    return model(x, gen_lib.position_ids(b, 2, n // 2), jnp.ones((b, 3, 8)),
                 jnp.zeros((b, 3, 3)), jnp.full((b,), 0.5), jnp.ones((b, 8)))


def _paths(state):
    return ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(state)]


def test_apply_places_zero_start_adapters():
    model = random_flux()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 16)), jnp.float32)
    before = forward(model, x)
    adapted = lora.apply(model, lora.lora_config(rank=4, alpha=8.0), rngs=nnx.Rngs(1))
    assert sorted(adapted) == sorted([
        "double_blocks/0/img_attn/qkv", "double_blocks/0/img_attn/proj",
        "double_blocks/0/txt_attn/qkv", "double_blocks/0/txt_attn/proj",
        "double_blocks/0/img_mlp/0", "double_blocks/0/img_mlp/2", "double_blocks/0/txt_mlp/0",
        "double_blocks/0/txt_mlp/2", "single_blocks/0/linear1", "single_blocks/0/linear2"])
    layer = model.double_blocks[0].img_attn.qkv
    assert isinstance(layer, lora.LoRALinear) and layer.scale == 2.0
    assert layer.lora_a.shape == (32, 4) and layer.lora_b.shape == (4, 96)
    assert layer.lora_a.get_metadata()["out_sharding"] == ("embed", None)
    assert layer.lora_b.get_metadata()["out_sharding"] == (None, "heads")
    np.testing.assert_array_equal(np.asarray(forward(model, x)), np.asarray(before))  # B = 0
    # Base weights keep their paths (pretrained import / export unchanged).
    assert "double_blocks/0/img_attn/qkv/kernel" in _paths(nnx.state(model, nnx.Param))
    with pytest.raises(ValueError, match="match no nnx.Linear"):
        lora.apply(random_flux(), lora.lora_config(patterns=("nothing_here$",)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank must be >= 1"):
        lora.apply(random_flux(), lora.lora_config(rank=-1), rngs=nnx.Rngs(0))


def test_merge_equals_adapted_forward():
    model = random_flux()
    lora.apply(model, lora.lora_config(rank=2, alpha=4.0, patterns=(r"linear1$", r"qkv$")),
               rngs=nnx.Rngs(2))
    rng = np.random.default_rng(2)
    for _, var in nnx.iter_graph(model):
        if isinstance(var, nnx.LoRAParam):
            var.set_value(jnp.asarray(0.2 * rng.standard_normal(var.shape), var.dtype))
    x = jnp.asarray(rng.standard_normal((2, 4, 16)), jnp.float32)
    adapted = np.asarray(forward(model, x))
    lora.merge(model)
    assert not nnx.state(model, nnx.LoRAParam)
    assert type(model.single_blocks[0].linear1) is nnx.Linear
    assert np.abs(np.asarray(forward(model, x)) - adapted).max() <= 1e-5


def test_generator_lora_config_trains_only_adapters():
    cfg = models.tiny_model_config()
    cfg.lora = lora.lora_config(rank=4)
    gen = nnx.eval_shape(lambda: models.build_generator(cfg, rngs=nnx.Rngs(0)))  # structure only
    trainable = nnx.All(models.TRAINABLE, lambda path, _: bool(
        re.search(lora.TRAINABLE_PATTERN, "/".join(map(str, path)))))
    _, params, rest = nnx.split(gen, trainable, ...)
    names = _paths(params)
    assert names and all(re.search(r"/lora_[ab]$", n) for n in names)
    # 8 adapted layers per double block, 2 per single block; A and B each
    assert len(names) == 2 * (8 * cfg.flux.depth + 2 * cfg.flux.depth_single_blocks)
    assert _paths(nnx.state(gen, lora.trainable_filter())) == names
    assert not any("lora" in n for n in _paths(rest))


def test_lora_training_step_on_imported_flux(tmp_path_factory):
    """flow.training_loss on the imported tiny FLUX (T5 + CLIP conditioning, Kontext context):
    the loss is finite and gradients reach exactly the adapters (B included)."""
    import torch_refs

    from vision_banana import convert, flow

    folder, _, _, cfg = torch_refs.tiny_generator(tmp_path_factory)
    cfg = cfg.copy_and_resolve_references()
    cfg.lora = lora.lora_config(rank=2)
    graphdef, state = nnx.split(nnx.eval_shape(
        lambda: models.build_generator(cfg, rngs=nnx.Rngs(0))))
    state = convert.load_pretrained(folder, state, missing="keep", progress=False)
    rng = np.random.default_rng(0)
    state = jax.tree.map(  # adapters as `lora.apply` initializes them: A random, B zero
        lambda v: v.replace(jnp.asarray(
            0.1 * rng.standard_normal(v.shape) if v.shape[1] == 2 else np.zeros(v.shape),
            v.dtype)) if isinstance(v, nnx.LoRAParam) else v,
        state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    gen = nnx.merge(graphdef, state)
    trainable = nnx.All(models.TRAINABLE, lambda path, _: bool(
        re.search(lora.TRAINABLE_PATTERN, "/".join(map(str, path)))))
    graphdef, params, rest = nnx.split(gen, trainable, ...)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    batch = {"image": images, "target": images[:, ::-1], "has_image": np.array([True, False]),
             "tokens": gen.tokenizer(["generate a metric depth map", "a photo of a cat"])}

    @functools.partial(jax.jit, compiler_options=FAST)
    def grads(params):
        def loss(p):
            return flow.training_loss(nnx.merge(graphdef, p, rest), batch, jax.random.key(0),
                                      flow.flow_config())[0]
        return jax.value_and_grad(loss)(params)

    value, g = grads(params)
    assert np.isfinite(float(value))
    norms = {"/".join(map(str, p)): float(jnp.abs(v[...]).max()) for p, v in nnx.to_flat_state(g)}
    assert norms and all(k.endswith(("lora_a", "lora_b")) for k in norms)
    assert max(v for k, v in norms.items() if k.endswith("lora_b")) > 0
