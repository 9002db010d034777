"""Predictor: restore from a workdir, per-example seeds, decoding and ensembling, CLI."""

import cv2
import numpy as np
import pytest

from tasks import depth as depth_codec
from vision_banana import predict


@pytest.fixture(scope="module")
def workdir(tiny_workdir):
    return tiny_workdir


@pytest.fixture(scope="module")
def predictor(workdir):
    return predict.Predictor.from_workdir(workdir)


def _images(n, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.slow
def test_from_workdir_restores_ema(workdir, predictor):
    assert predictor.step == 2
    raw = predict.Predictor.from_workdir(workdir, use_ema=False)
    ema_leaf = np.asarray(predictor.params["transformer"]["img_in"]["kernel"].get_value())
    raw_leaf = np.asarray(raw.params["transformer"]["img_in"]["kernel"].get_value())
    assert not np.array_equal(ema_leaf, raw_leaf)
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 7"):
        predict.Predictor.from_workdir(workdir, step=7)


@pytest.mark.slow
def test_outputs_depend_only_on_own_example_and_seed(predictor):
    images = _images(3)
    prompts = ["generate a metric depth map", "a surface normal map", "a red cube"]
    out = predictor(images, prompts, seeds=[5, 6, 7])
    assert out.dtype == np.uint8 and out.shape == (3, 16, 16, 3)
    # Same example, same seed, different batch company and size -> the same image (a batch of
    # another size is another XLA program: float rounding may move a pixel by one level).
    alone = predictor(images[1:2], prompts[1:2], seeds=[6])
    diff = np.abs(alone[0].astype(int) - out[1].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    # Same call shape: bit-identical.
    again = predictor(images[::-1], prompts[::-1], seeds=[7, 6, 5])
    np.testing.assert_array_equal(again[::-1], out)
    # Another seed changes the sample (the sampler starts from seeded noise).
    assert not np.array_equal(predictor(images[1:2], prompts[1:2], seeds=[7])[0], out[1])
    # Text-to-image at the config's resolution.
    t2i = predictor(None, ["a blue sphere"], seeds=0)
    assert t2i.shape == (1, 16, 16, 3)


@pytest.mark.slow
def test_predict_decoded_ensembles_depth(predictor):
    images = _images(2)
    prompts = ["generate a metric depth map of this scene"] * 2
    out = predictor.predict_decoded(images, prompts, "depth", ensemble=3, seeds=[0, 1])
    assert len(out) == 2 and out[0].shape == (16, 16) and out[0].dtype == np.float32
    # The ensemble is the per-pixel median of the members' decoded depths (seed*K + k).
    members = predictor(np.repeat(images, 3, 0), [p for p in prompts for _ in range(3)],
                        seeds=range(6))
    for i in range(2):
        decoded = np.stack([depth_codec.decode(m) for m in members[3 * i:3 * i + 3]])
        np.testing.assert_array_equal(out[i], np.median(decoded, axis=0))


def test_combine_rules():
    d = np.array([[1.0, np.inf]], np.float32)
    depth = predict.combine("depth", [d, d * 2, d * 3])
    np.testing.assert_array_equal(depth, [[2.0, np.inf]])
    n = np.zeros((1, 1, 3), np.float32)
    a, b = n.copy(), n.copy()
    a[..., 0], b[..., 1] = 1, 1
    np.testing.assert_allclose(predict.combine("normals", [a, b]), [[[2 ** -0.5, 2 ** -0.5, 0]]],
                               rtol=1e-6)
    votes = [np.array([[0, -1, 2]]), np.array([[0, 2, 2]]), np.array([[1, 2, -1]])]
    np.testing.assert_array_equal(predict.combine("semantic", votes), [[0, 2, 2]])
    masks = [np.array([True, False]), np.array([True, True]), np.array([False, True])]
    np.testing.assert_array_equal(predict.combine("binary", masks), [True, True])
    with pytest.raises(ValueError, match="cannot ensemble"):
        predict.combine("instance", [object(), object()])


@pytest.mark.slow
def test_cli_writes_png(workdir, tmp_path, predictor):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    image = _images(1)[0]
    cv2.imwrite(str(src), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    predict.main(["--workdir", str(workdir), "--image", str(src), "--prompt",
                  "generate a surface normal map", "--out", str(out), "--seed", "3"])
    written = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, predictor(image[None], ["generate a surface normal map"],
                                                     seeds=[3])[0])


@pytest.mark.slow
def test_cli_resizes_the_input_and_saves_the_decoded_map(workdir, tmp_path, predictor):
    """A 30x22 photo (not a multiple of the patch size) goes in; depth in metres comes out at
    the photo's size, equal to decoding the written PNG (the letterboxed generation) and
    bringing the letterbox's inside back to the photo's size."""
    src, out = tmp_path / "photo.png", tmp_path / "depth.png"
    photo = np.random.default_rng(5).integers(0, 256, (30, 22, 3), dtype=np.uint8)
    cv2.imwrite(str(src), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    prompt = "generate a metric depth map of this image"
    predict.main(["--workdir", str(workdir), "--image", str(src), "--prompt", prompt,
                  "--out", str(out), "--task", "depth", "--mode", "onestep"])
    written = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert written.shape == (16, 16, 3)  # the run's resolution
    depth = np.load(tmp_path / "depth.npy")
    assert depth.shape == (30, 22) and depth.dtype == np.float32
    import tasks
    from tasks import geometry

    _, box = geometry.letterbox(photo, (16, 16))
    expected = geometry.unletterbox(tasks.get("depth").decode(written), box, (30, 22), "depth")
    np.testing.assert_array_equal(depth, expected)
