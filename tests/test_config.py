"""Configs: every variant loads, is locked, and names unknown keys (file, code and CLI)."""

import pathlib

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from vision_banana import optim, predict, sharding, train
from vision_banana.configs import base, demo, flux_dev, flux_kontext, flux_schnell, small, tiny

REPO = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = {"tiny": tiny, "small": small, "flux_dev": flux_dev, "flux_kontext": flux_kontext,
            "flux_schnell": flux_schnell, "demo": demo}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_is_locked_and_complete(name):
    c = VARIANTS[name].get_config()
    assert c.is_locked
    reference = base.get_config()
    for section in ("train", "optim", "mesh", "predict", "sharding"):
        assert set(c[section]) == set(reference[section]), section
    with pytest.raises(AttributeError, match="stepz"):
        c.train.stepz = 3
    with pytest.raises(AttributeError, match="lrr"):
        c.optim.lrr = 1.0


def test_get_config_arg_options():
    c = tiny.get_config("res=64,batch=4,steps=7")
    assert tuple(c.data.resolution) == (64, 64)
    assert c.train.global_batch_size == 4 and c.train.steps == 7
    with pytest.raises(KeyError, match="unknown config option 'rez'"):
        tiny.get_config("rez=64")


def _parse(argv):
    """Parse like `python -m vision_banana.train argv` (config_flags reads overrides from argv)."""
    argv = ["train"] + argv
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    fv(argv)
    return fv.config


def test_command_line_overrides_and_unknown_keys():
    path = REPO / "vision_banana" / "configs" / "tiny.py"
    c = _parse([f"--config={path}:runlocal=1", "--config.train.steps=7",
                "--config.optim.lr=0.5"])
    assert c.train.steps == 7 and c.optim.lr == 0.5 and c.train.global_batch_size == 8
    with pytest.raises(Exception, match="stepz"):
        _parse([f"--config={path}", "--config.train.stepz=7"])


def test_flux_shapes_build_and_shard_abstractly():
    """Published FLUX.1 shapes: 11.9B transformer parameters; every logical axis has a rule,
    and on (data 1 x fsdp 8) the large matrices shard 8 ways; nothing is allocated."""
    kontext = flux_kontext.get_config()
    assert kontext.model.context_mode == "sequence" and kontext.mesh.fsdp == -1
    c = flux_dev.get_config()
    assert c.init_from == ""
    _, params, _, _ = predict.abstract_model(c)
    transformer = sum(x.size for x in jax.tree.leaves(params["transformer"]))
    assert 11.8e9 < transformer < 12.0e9
    mesh = sharding.make_mesh(dict(data=1, fsdp=-1, tensor=1))
    tx = optim.make_optimizer(c.optim, 100)
    _, abstract, shardings, _ = train.abstract_state(c, tx, mesh, sharding.rules_from_config(c))
    # Stacked blocks (model.scan_layers, on for FLUX.1): a leading, replicated layer axis.
    qkv = shardings["params"]["transformer"]["double_blocks"]["img_attn"]["qkv"]["kernel"]
    assert qkv.get_value().spec[:2] == (None, "fsdp")
    sizes = [x.size for x in jax.tree.leaves(abstract["params"])]
    specs = [s.spec for s in jax.tree.leaves(shardings["params"])]
    sharded = sum(n for n, s in zip(sizes, specs) if any(a is not None for a in s))
    assert sharded / sum(sizes) > 0.99  # FSDP covers (almost) every parameter byte


def test_small_is_one_gpu_sized():
    c = small.get_config()
    _, params, _, _ = predict.abstract_model(c)
    n = sum(x.size for x in jax.tree.leaves(params))
    assert 100e6 < n < 300e6
