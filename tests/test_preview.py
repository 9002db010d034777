"""The preview CLI renders a grid with every task of a named mixture."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_mix import mixture, mixtures, preview


def test_pick_examples_covers_every_task():
    mix = mixture.Mixture(mixtures.get("synthetic_tiny"))
    picked = preview.pick_examples(mix, 16)
    assert set(picked) == set(mix.tasks)
    per_task = -(-16 // len(mix.tasks))
    assert all(len(v) == per_task for v in picked.values())
    for task, examples in picked.items():
        assert all(e["task"] == task for e in examples)


def test_grid_renders_readable_png(tmp_path):
    out = preview.main(["--mixture", "synthetic_tiny", "--out", str(tmp_path / "grid.png"), "--n", "8"])
    img = cv2.imread(str(out))
    assert img is not None
    h, w = img.shape[:2]
    n_tasks = len(mixture.Mixture(mixtures.get("synthetic_tiny")).tasks)
    assert h > 100 * n_tasks and w > 300  # a row per task, a readable cell per example
    assert img.std() > 20  # not blank: images and text


def test_cli_runs_as_module_and_names_unknown_mixture(tmp_path, capsys):
    with pytest.raises(SystemExit):
        preview.main(["--help"])
    assert "--mixture" in capsys.readouterr().out
    bad = subprocess.run([sys.executable, "-m", "data_mix.preview", "--mixture", "nope", "--out",
                          str(tmp_path / "x.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown mixture 'nope'" in bad.stderr


def test_text_to_image_panel_is_marked():
    panel = preview._side_by_side({"target": np.zeros((10, 12, 3), np.uint8), "prompt": "x"})
    assert panel.shape == (10, 30, 3)
    assert (panel[:, :12] != 0).all() and (panel[:, 12:18] == 255).all()


def test_mixture_that_needs_a_root_takes_it(tmp_path, capsys):
    """Issue 12.8: cityscapes_mix was offered by --help and always failed (no way to pass root)."""
    import fixtures_datasets as fx

    with pytest.raises(SystemExit):
        preview.main(["--help"])
    assert "cityscapes_mix (needs root)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        preview.main(["--mixture", "cityscapes_mix", "--out", str(tmp_path / "x.png")])
    assert "mixture 'cityscapes_mix' needs root: pass --root DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        preview.main(["--mixture", "synthetic_tiny", "--root", str(tmp_path), "--out", "x.png"])
    assert "reads no dataset folder" in capsys.readouterr().err
    fx.write_cityscapes(tmp_path / "cs", split="train", frames_per_city=1, size=(32, 64))
    out = preview.main(["--mixture", "cityscapes_mix", "--root", str(tmp_path / "cs"),
                        "--arg", "resolution=32", "--out", str(tmp_path / "grid.png"), "--n", "4"])
    assert cv2.imread(str(out)) is not None
