"""Mesh, logical rules and FSDP training on 8 fake CPU devices."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from vision_banana import checkpoint, metrics_io, sharding, train
from vision_banana.configs import base, tiny

RULES = base.RULES


def _mesh(data, fsdp, tensor=1, num_devices=-1):
    return sharding.make_mesh(dict(data=data, fsdp=fsdp, tensor=tensor, num_devices=num_devices))


def test_make_mesh_resolves_and_rejects():
    assert jax.device_count() == 8  # tests/conftest.py
    assert dict(_mesh(-1, 1).shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert dict(_mesh(2, -1).shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert dict(_mesh(-1, 1, num_devices=1).shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert _mesh(2, 4).axis_types == (jax.sharding.AxisType.Auto,) * 3
    with pytest.raises(ValueError, match="needs 6 devices, but 8"):
        _mesh(3, 2)
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        _mesh(-1, -1)
    with pytest.raises(ValueError, match="not divisible"):
        _mesh(-1, 3)


def test_logical_to_spec_rules_and_fallbacks():
    mesh = _mesh(2, 2, 2)
    assert sharding.logical_to_spec(("embed", "mlp"), (8, 16), mesh, RULES) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(("vocab", "embed"), (257, 8), mesh, RULES) == P(None, "fsdp")
    # batch over two axes at once.
    assert sharding.logical_to_spec(("batch", None), (8, 3), mesh, RULES) == P(("data", "fsdp"), None)
    fallbacks = []
    # 3 is not divisible by fsdp=2: that dimension is replicated, and reported.
    assert sharding.logical_to_spec(("embed", "mlp"), (3, 16), mesh, RULES, where="w",
                                    fallbacks=fallbacks) == P(None, "tensor")
    assert fallbacks and "w dim 0" in fallbacks[0] and "not divisible" in fallbacks[0]
    # A mesh axis may shard only one dimension of an array.
    assert sharding.logical_to_spec(("mlp", "heads"), (4, 4), mesh, RULES) == P("tensor", None)
    with pytest.raises(ValueError, match=r"kernel: logical axis 'bogus' has no rule"):
        sharding.logical_to_spec(("bogus",), (4,), mesh, RULES, where="kernel")
    with pytest.raises(ValueError, match="unknown mesh axis 'model'"):
        sharding.rules_from_config((("embed", "model"),))


def test_activation_rules_drop_batch_axes():
    act = dict(sharding.activation_rules(RULES))
    assert act["batch"] == ("data", "fsdp")
    assert act["embed"] is None  # fsdp shards parameters' embed, activations' batch
    assert act["mlp"] == "tensor" and act["heads"] == "tensor"


def test_tree_shardings_follow_variable_metadata():
    mesh = _mesh(2, 4)

    class Tiny(nnx.Module):
        def __init__(self):
            init = nnx.with_partitioning(nnx.initializers.ones, ("embed", "mlp"))
            self.lin = nnx.Linear(8, 16, kernel_init=init, rngs=nnx.Rngs(0))

    with nnx.use_eager_sharding(False):
        state = nnx.state(nnx.eval_shape(Tiny))
    shard = sharding.tree_shardings(state, mesh, RULES)
    assert shard["lin"]["kernel"].get_value().spec == P("fsdp", None)
    assert shard["lin"]["bias"].get_value().spec == P()  # no names: replicated


def _fsdp_config(cache, **mesh):
    c = tiny.get_config("runlocal=1")
    c.train.steps = 2
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.compilation_cache_dir = str(cache)
    for k, v in mesh.items():
        c.mesh[k] = v
    return c


@pytest.mark.slow
def test_fsdp_trains_sharded_and_matches_one_device(tmp_path, xla_cache):
    """(data 2 x fsdp 4) on 8 devices: arrays really sharded, losses equal the 1-device run."""
    c8 = _fsdp_config(xla_cache, data=2, fsdp=4)
    state = train.train_and_evaluate(c8, tmp_path / "fsdp")

    def local_fraction(x):
        return x.addressable_shards[0].data.size / x.size

    kernel = state["params"]["transformer"]["double_blocks"][0]["img_mlp"][0]["kernel"]
    assert kernel.get_value().sharding.spec == P("fsdp", None)  # tensor axis has size 1
    assert local_fraction(kernel.get_value()) == 1 / 4
    adam = state["opt_state"][1][0]  # chain(clip, adamw) -> adamw's ScaleByAdamState
    mu = adam.mu["transformer"]["double_blocks"][0]["img_mlp"][0]["kernel"]
    assert mu.get_value().sharding.spec == P("fsdp", None)
    assert local_fraction(mu.get_value()) == 1 / 4
    ema = state["ema"]["transformer"]["double_blocks"][0]["img_mlp"][0]["kernel"]
    assert local_fraction(ema.get_value()) == 1 / 4
    fractions = [local_fraction(x) for x in jax.tree.leaves(state["params"])]
    assert sum(f < 1 for f in fractions) > len(fractions) // 2  # most arrays are sharded

    c1 = _fsdp_config(xla_cache, data=1, fsdp=1, num_devices=1)
    train.train_and_evaluate(c1, tmp_path / "single")
    losses = {}
    for name in ("fsdp", "single"):
        losses[name] = [r["loss"] for r in metrics_io.read_jsonl(tmp_path / name / "metrics.jsonl")
                        if "loss" in r]
    assert len(losses["fsdp"]) == 2
    np.testing.assert_allclose(losses["fsdp"], losses["single"], rtol=2e-5)

    # Resume the sharded run: the restored arrays come back with the same shardings.
    c8.train.steps = 3
    state = train.train_and_evaluate(c8, tmp_path / "fsdp")
    kernel = state["params"]["transformer"]["double_blocks"][0]["img_mlp"][0]["kernel"]
    assert kernel.get_value().sharding.spec == P("fsdp", None)  # tensor axis has size 1
    assert checkpoint.Checkpointer(tmp_path / "fsdp", read_only=True).all_steps() == [2, 3]
