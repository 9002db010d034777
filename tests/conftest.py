"""Test-session setup shared by every test module.

Eight fake CPU devices let sharding tests build real meshes; absl flags are marked parsed
because grain worker processes read them (see ENVIRONMENT notes).
"""

import os
import pathlib

# Must happen before jax is imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import absl.flags  # noqa: E402
import pytest  # noqa: E402

absl.flags.FLAGS.mark_as_parsed()

REPO = pathlib.Path(__file__).resolve().parents[1]


def real_outputs_dir() -> pathlib.Path | None:
    """Folder of real Vision Banana outputs (test material kept outside the repository)."""
    env = os.environ.get("VB_REAL_OUTPUTS")
    for cand in ([pathlib.Path(env)] if env else []) + [REPO.parent / "shared" / "real_outputs"]:
        if (cand / "manifest.json").is_file():
            return cand
    return None


@pytest.fixture
def real_outputs() -> pathlib.Path:
    path = real_outputs_dir()
    if path is None:
        pytest.skip("real Vision Banana outputs not present (set VB_REAL_OUTPUTS)")
    return path


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory) -> pathlib.Path:
    """One persistent XLA compilation cache for every xdist worker of the session: the tiny
    train step compiles once (10-60 s on 2 cores), not once per test module."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if base.name.startswith("popen-gw") else base
    path = root / "vision_banana_xla_cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory, xla_cache) -> pathlib.Path:
    """A workdir of the smallest trained run (tiny runlocal, 2 steps, one device), shared by
    the tests that restore, predict or score from a checkpoint. Read-only for its users."""
    from vision_banana import train
    from vision_banana.configs import tiny

    workdir = tmp_path_factory.mktemp("tiny_run")
    c = tiny.get_config("runlocal=1")
    c.mesh.num_devices = 1
    c.train.steps = 2
    c.train.compilation_cache_dir = str(xla_cache)
    train.train_and_evaluate(c, workdir)
    return workdir
