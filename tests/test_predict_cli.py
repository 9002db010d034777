"""The predict CLI checks every argument before any loading or generating, each fault one
line and a non-zero exit; hyphenated flags, with the old underscore spellings still accepted.

Most cases point --workdir at a folder that is not a run: were an argument checked only after
loading, the error would be about the workdir instead of the argument.
"""

import argparse
import pathlib

import cv2
import numpy as np
import pytest

from vision_banana import cli_flags, export, predict

SEMANTIC = 'Segment the image with colors {"car": (255, 0, 0), "road": (0, 0, 255)}'


def _run(tmp_path, *extra, out=None, prompt="generate a metric depth map"):
    """SystemExit message of `predict.main` on a workdir that is not a run."""
    argv = ["--workdir", str(tmp_path / "not_a_run"), "--prompt", prompt,
            "--out", str(out or tmp_path / "out.png"), *extra]
    with pytest.raises(SystemExit) as e:
        predict.main(argv)
    assert e.value.code not in (0, None)
    message = str(e.value.code)
    assert "\n" not in message, message
    return message


def test_ensemble_zero_is_refused(tmp_path):
    msg = _run(tmp_path, "--task", "depth", "--ensemble", "0")
    assert "--ensemble 0: must be >= 1" in msg


def test_unknown_task_is_refused_before_loading(tmp_path):
    msg = _run(tmp_path, "--task", "dpeth")
    assert "--task 'dpeth': unknown codec; known: binary, depth" in msg
    assert not (tmp_path / "out.png").exists()


def test_output_must_be_a_png_in_an_existing_writable_folder(tmp_path):
    assert ".png file name" in _run(tmp_path, out=tmp_path / "out.jpg")
    assert "does not exist" in _run(tmp_path, out=tmp_path / "missing" / "out.png")
    folder = _unwritable_folder(tmp_path)
    if folder is None:
        pytest.skip("no unwritable folder on this machine")
    assert "is not writable" in _run(tmp_path, out=folder / "out.png")


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in (root ignores permission bits: /sys)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for folder in (locked, pathlib.Path("/sys")):
        try:
            (folder / ".probe").touch()
        except OSError:
            return folder
        (folder / ".probe").unlink()
    return None


@pytest.mark.parametrize("task,prompt,fault", [
    ("semantic", "segment this image into car and road", "states no class -> color mapping"),
    ("semantic", 'Segment with colors {"car": (255, 0), "road": (0, 0, 255)}',
     "no readable color for 'car'"),
    ("semantic", 'Segment with colors {"car": (255, 0, 0), "road": (255, 0, 0)}',
     "'car' and 'road' are both (255, 0, 0)"),
    ("semantic", "Segment: car is (300, 0, 0), road is blue", "channels must be 0..255"),
    ("referring", "Segment the dog that is sleeping", "states no class -> color mapping"),
    ("instance", 'Segment every car, {"background": (0, 0)}', "no readable color for 'background'"),
])
def test_label_tasks_refuse_an_unreadable_color_mapping(tmp_path, task, prompt, fault):
    assert fault in _run(tmp_path, "--task", task, prompt=prompt)


def test_a_valid_request_gets_as_far_as_the_workdir(tmp_path, capsys):
    """Old spellings still parse (with a notice); a readable prompt passes; the next fault is
    the workdir's, named with its config.json."""
    msg = _run(tmp_path, "--task", "semantic", "--no_ema", "--num_steps", "2", "--seed", "1",
               prompt=SEMANTIC)
    assert "config.json not found: not a training workdir" in msg
    err = capsys.readouterr().err
    assert "--no_ema is deprecated; use --no-ema" in err
    assert "--num_steps is deprecated; use --num-steps" in err
    assert "config.json" in _run(tmp_path, "--no-ema", "--num-steps", "2")
    image = tmp_path / "in.png"
    image.write_bytes(b"not an image")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="--image .*in.png: not a readable image"):
        predict.main(["--workdir", str(tmp_path / "run"), "--image", str(image), "--prompt", "x",
                      "--out", str(tmp_path / "out.png")])


def test_hyphenate_rewrites_only_declared_flags(capsys):
    p = argparse.ArgumentParser(prog="tool")
    p.add_argument("--num-steps", type=int)
    p.add_argument("--keep_me")
    p.add_argument("rest", nargs="*")
    args = cli_flags.parse_args(p, ["--num_steps=3", "--keep_me", "a", "--", "--num_steps"])
    assert args.num_steps == 3 and args.keep_me == "a" and args.rest == ["--num_steps"]
    assert capsys.readouterr().err.strip() == "tool: --num_steps is deprecated; use --num-steps"


def test_export_takes_both_spellings(tmp_path, capsys):
    for flag in ("--no-ema", "--no_ema"):
        with pytest.raises(FileNotFoundError, match="config.json"):
            export.main(["--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), flag])
    assert capsys.readouterr().err.count("--no_ema is deprecated; use --no-ema") == 1


@pytest.mark.slow
def test_ensemble_and_semantic_through_the_cli(tiny_workdir, tmp_path):
    """A readable semantic prompt runs through, ensembled (majority vote), at the input's size."""
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((20, 12, 3), np.uint8))
    predict.main(["--workdir", str(tiny_workdir), "--image", str(src), "--prompt", SEMANTIC,
                  "--out", str(tmp_path / "seg.png"), "--task", "semantic", "--ensemble", "2"])
    labels = np.load(tmp_path / "seg.npy")
    assert labels.shape == (20, 12) and set(np.unique(labels)) <= {-1, 0, 1}
