"""model_factory: the `xla` config section, its command-line overrides, and old workdirs'
`train.xla_options` strings (still read, migrated on load)."""

import json
import pathlib
import warnings

import pytest
from absl import flags
from ml_collections import config_flags

from vision_banana import model_factory
from vision_banana.configs import base, tiny

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_xla_section_gives_the_compile_options():
    assert model_factory.xla_options(base.get_config()) == {}
    assert model_factory.xla_options(tiny.get_config("runlocal=1")) == {
        "xla_backend_optimization_level": 0}
    c = tiny.get_config()
    c.xla.xla_cpu_use_fusion_emitters = False
    assert model_factory.xla_options(c) == {"xla_cpu_use_fusion_emitters": False}
    with pytest.raises(TypeError):
        c.xla.xla_backend_optimization_level = "fast"


def test_xla_section_on_the_command_line():
    path = REPO / "vision_banana" / "configs" / "tiny.py"
    argv = ["train", f"--config={path}", "--config.xla.xla_backend_optimization_level=1",
            "--config.xla.xla_cpu_use_fusion_emitters=false"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    fv(argv)
    assert model_factory.xla_options(fv.config) == {"xla_backend_optimization_level": 1,
                                                    "xla_cpu_use_fusion_emitters": False}


def test_deprecated_string_still_works_and_warns():
    c = tiny.get_config()
    c.train.xla_options = "xla_backend_optimization_level=0,xla_cpu_use_fusion_emitters=false"
    c.xla.xla_backend_optimization_level = 2  # the section wins on a name given in both
    with pytest.warns(FutureWarning, match="train.xla_options.*deprecated"):
        options = model_factory.xla_options(c)
    assert options == {"xla_backend_optimization_level": 2, "xla_cpu_use_fusion_emitters": False}
    c.train.xla_options = "no_equals_sign"
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="'no_equals_sign': expected"):
        model_factory.xla_options(c)


def test_old_workdir_config_is_migrated_on_load(tmp_path):
    """A config.json saved before the `xla` section (train.xla_options string) loads with the
    options in `xla` and the string cleared, so restoring it warns of nothing."""
    saved = json.loads(tiny.get_config("runlocal=1").to_json_best_effort())
    del saved["xla"]
    saved["train"]["xla_options"] = "xla_backend_optimization_level=0"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = model_factory.load_config(tmp_path)
    assert config.is_locked and config.train.xla_options == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model_factory.xla_options(config) == {"xla_backend_optimization_level": 0}
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        model_factory.load_config(tmp_path)
