"""One inference geometry: the predict CLI and a benchmark's checkpoint path give identical
decoded maps for the same checkpoint and the same images of a non-square, non-model size."""

import argparse

import cv2
import numpy as np
import pytest

import tasks
from eval import from_checkpoint
from tasks import geometry, semantic
from vision_banana import predict

CLASSES = ["road", "car", "sky"]
PROMPTS = {
    "depth": "generate a metric depth map of this image",
    "normals": "generate a surface normal map of this image",
    "semantic": semantic.render_prompt(np.random.default_rng(0), CLASSES, semantic.palette(3),
                                       state_background=True, layout="json"),
}


@pytest.fixture(scope="module")
def predictor(tiny_workdir):
    """The benchmarks' checkpoint loader, with their default options (--step, --no-ema, ...)."""
    args = argparse.Namespace(workdir=tiny_workdir, step=None, no_ema=False, num_steps=None)
    return from_checkpoint.load_predictor(args)


@pytest.mark.slow
@pytest.mark.parametrize("task,size", [("depth", (30, 22)), ("normals", (20, 44)),
                                       ("semantic", (30, 22))])
def test_cli_and_benchmark_path_give_identical_maps(tiny_workdir, predictor, tmp_path, task,
                                                    size):
    image = np.random.default_rng(len(task)).integers(0, 256, size + (3,), dtype=np.uint8)
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    prompt = PROMPTS[task]
    predict.main(["--workdir", str(tiny_workdir), "--image", str(src), "--prompt", prompt,
                  "--out", str(out), "--task", task, "--seed", "0"])
    from_cli = np.load(tmp_path / "out.npy")

    # The decode arguments a benchmark job carries: here, what the prompt states.
    job = from_checkpoint.Job("0", image, prompt, tasks.get(task).parse_prompt(prompt))
    [(_, from_benchmark)] = list(from_checkpoint.predict(predictor, [job], task, batch_size=1,
                                                         seed=0, progress=False))
    assert from_cli.shape[:2] == size and from_benchmark.shape[:2] == size
    np.testing.assert_array_equal(from_cli, from_benchmark)
    # ... and both are the Predictor's own geometry: letterbox, decode, cut, resize back.
    [direct] = predictor.predict_maps([image], [prompt], task, seeds=[0])
    np.testing.assert_array_equal(direct, from_cli)
    canvas, box = geometry.letterbox(image, predictor.resolution)
    [at_model] = predictor.predict_decoded(canvas[None], [prompt], task, seeds=[0])
    np.testing.assert_array_equal(geometry.unletterbox(at_model, box, size, task), direct)


def test_letterbox_keeps_aspect_and_unletterbox_policies():
    image = np.full((30, 22, 3), 200, np.uint8)
    canvas, box = geometry.letterbox(image, (16, 16))
    top, bottom, left, right = box
    assert canvas.shape == (16, 16, 3) and (bottom - top, right - left) == (16, 12)
    assert canvas[:, :left].max() == 0 and canvas[:, right:].max() == 0
    # Depth: the +inf sky is never blended with finite depth when brought back.
    depth = np.full((16, 16), 2.0, np.float32)
    depth[:8] = np.inf
    back = geometry.unletterbox(depth, box, (30, 22), "depth")
    assert set(np.unique(back).tolist()) == {2.0, np.inf}
    # Labels by nearest: no label is invented between 0 and 5.
    labels = np.zeros((16, 16), np.int32)
    labels[:, 8:] = 5
    assert set(np.unique(geometry.unletterbox(labels, box, (30, 22), "semantic"))) == {0, 5}
    # Normals come back unit length.
    n = np.zeros((16, 16, 3), np.float32)
    n[..., 2], n[:, 8:, 0] = 1, 1
    back = geometry.unletterbox(geometry.unit_vectors(n), box, (30, 22), "normals")
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1, atol=1e-5)
    with pytest.raises(KeyError, match="no resampling policy for task 'generation'"):
        geometry.unletterbox(labels, box, (30, 22), "generation")


@pytest.mark.slow
def test_demo_benchmark_door_gives_the_predictors_maps(tiny_workdir, predictor, tmp_path):
    """The demo's door (`eval.synthetic` on the runner, our checkpoint) writes exactly the
    Predictor's maps for the same scene images, prompts and seeds, at a non-model scene size."""
    from data_mix.synthetic import SyntheticScenes
    from eval import synthetic

    out = tmp_path / "synthetic"
    synthetic.main(["--task", "depth", "--num-scenes", "2", "--resolution", "20", "--workdir",
                    str(tiny_workdir), "--out", str(out), "--no-progress", "--worst", "0"])
    [folder] = sorted((out / "predictions").iterdir())
    scenes = SyntheticScenes(seed=0, size=20, num_records=2, split="test")
    for i in range(2):
        example = synthetic.build_example("depth", i, scenes[i], 0, "demo")
        spec = synthetic.decode_spec("depth", example, 6)
        [direct] = predictor.predict_maps([example["image"]], [example["prompt"]], "depth",
                                          spec=[spec], seeds=[i])
        written = np.load(folder / f"{i:04d}.npy")
        assert written.shape == (20, 20)
        np.testing.assert_array_equal(written, direct)
