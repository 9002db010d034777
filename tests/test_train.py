"""The trainer end to end on the tiny "runlocal" config: logs, checkpoints, samples, NaN stop."""

import json

import cv2
import jax
import numpy as np
import pytest

from vision_banana import checkpoint, evaluators, metrics_io, optim, predict, sharding, train
from vision_banana.configs import tiny


def runlocal_config(cache, **train_overrides):
    c = tiny.get_config("runlocal=1")
    c.mesh.num_devices = 1
    c.train.compilation_cache_dir = str(cache)
    for k, v in train_overrides.items():
        c.train[k] = v
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory, xla_cache):
    """4 steps, log every 2, checkpoint every 2, evaluators at the end."""
    workdir = tmp_path_factory.mktemp("run")
    c = runlocal_config(xla_cache, steps=4, log_every=2, checkpoint_every=2)
    with c.unlocked():
        c.evaluators.samples = dict(every=0, num_examples=3, split="validation")
        c.evaluators.heldout_loss = dict(every=0, num_batches=1, split="validation")
        c.evaluators.decoded = dict(every=0, num_batches=1, split="validation")
    state = train.train_and_evaluate(c, workdir)
    return c, workdir, state


@pytest.mark.slow
def test_metrics_logged(trained):
    c, workdir, _ = trained
    records = metrics_io.read_jsonl(workdir / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4]
    for r in steps:
        for key in ("loss", "grad_norm", "param_norm", "lr", "step_time_s", "examples_per_s"):
            assert np.isfinite(r[key]), key
        assert any(k.startswith("loss/") for k in r), r  # per-task loss
    # lr follows the schedule at the last step of each interval (0-based update index).
    sched = optim.make_schedule(c.optim, optim.decay_horizon(c))
    assert steps[-1]["lr"] == pytest.approx(float(sched(3)), rel=1e-6)
    evals = {k for r in records for k in r}
    assert {"heldout_loss/loss", "samples/num_examples", "decoded/seconds"} <= evals
    assert any(k.startswith("decoded/") and k.count("/") == 2 for k in evals), evals
    assert list((workdir / "tb").glob("events.out.tfevents.*"))
    assert json.loads((workdir / "config.json").read_text())["train"]["steps"] == 4


@pytest.mark.slow
def test_checkpoints_and_state(trained):
    c, workdir, state = trained
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    assert ckpt.all_steps() == [2, 4]
    assert int(state["step"]) == 4
    # fp32 master weights, and an EMA that differs from them after training.
    leaves = jax.tree.leaves(state["params"])
    assert all(x.dtype == np.float32 for x in leaves)
    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(leaves, jax.tree.leaves(state["ema"]))]
    assert max(diffs) > 0
    data_state = json.loads((workdir / "checkpoints/4/data/process_0-of-1.json").read_text())
    assert data_state["next_batch"] == 4
    ckpt.close()


@pytest.mark.slow
def test_sample_grid_written(trained):
    c, workdir, _ = trained
    png = workdir / "samples" / "step_000004.png"
    grid = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    h, w = c.data.resolution
    pad = 2
    assert grid.shape == (3 * (h + pad) + pad, 3 * (w + pad) + pad, 3)
    assert len((workdir / "samples" / "step_000004.txt").read_text().splitlines()) == 3


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, xla_cache):
    """2 good steps, then resume with an absurd learning rate: the run stops naming the step,
    no later state is saved, and the step-2 checkpoint stays the latest, untouched."""
    workdir = tmp_path / "run"
    good = train.train_and_evaluate(runlocal_config(xla_cache, steps=2, checkpoint_every=2),
                                    workdir)
    c = runlocal_config(xla_cache, steps=8, log_every=1, checkpoint_every=4)
    c.optim.lr = 1e30
    c.optim.warmup_steps = 0
    c.allow_config_change = True  # a resume with another optimizer must say so (issue 12)
    with pytest.raises(train.TrainingDiverged, match=r"non-finite .* at step \d+") as err:
        train.train_and_evaluate(c, workdir)
    message = str(err.value)
    bad_step = int(message.split(" at step ")[1].split(":")[0])
    assert 3 <= bad_step <= 4, message  # step 3 makes the weights ~1e30; step 4's loss is inf
    assert "Last good checkpoint: step 2" in message
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    assert ckpt.all_steps() == [2]
    mesh = sharding.make_mesh(c)
    _, params, _, _ = predict.abstract_model(c)
    abstract = sharding.abstract_with_shardings(
        params, sharding.tree_shardings(params, mesh, sharding.rules_from_config(c)))
    parts, _ = ckpt.restore(2, {"params": abstract}, with_data=False)
    for saved, trained in zip(jax.tree.leaves(parts["params"]), jax.tree.leaves(good["params"])):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(trained))
    ckpt.close()


def test_score_metrics():
    g = np.full((4, 4), 2.0, np.float32)
    m = evaluators.score("depth", g * 1.1, g)
    assert m["abs_rel"] == pytest.approx(0.1) and m["delta1"] == 1.0
    n = np.zeros((2, 2, 3), np.float32)
    n[..., 2] = 1
    tilted = np.zeros_like(n)
    tilted[..., 0], tilted[..., 2] = np.sin(0.1), np.cos(0.1)
    assert evaluators.score("normals", tilted, n)["mean_angle_deg"] == pytest.approx(
        np.degrees(0.1), rel=1e-4)
    labels = np.array([[0, 0], [1, -1]])
    m = evaluators.score("semantic", np.array([[0, 1], [1, 1]]), labels)
    assert m["pixel_acc"] == pytest.approx(2 / 3) and m["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    img = np.zeros((2, 2, 3), np.uint8)
    assert evaluators.score("generation", img + 1, img)["psnr_db"] == pytest.approx(
        10 * np.log10(255 ** 2))


def test_sample_grid_layout():
    images = np.full((2, 4, 4, 3), 10, np.uint8)
    gen, tgt = images + 1, images + 2
    grid = evaluators.sample_grid(images, np.array([True, False]), gen, tgt, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert (grid[1:5, 1:5] == 10).all() and (grid[6:10, 1:5] == 128).all()  # no input: gray
    assert (grid[1:5, 6:10] == 11).all() and (grid[1:5, 11:15] == 12).all()
