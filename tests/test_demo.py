"""`make demo`'s code path, end to end at smoke size (`--quick`: one-block model, 4 steps).

The full demo's claim (every task beats its trivial baseline) needs its 600 steps and is
measured by running `make demo` (figures in docs/demo.md); here we check that the whole path
(train -> checkpoint -> Predictor -> codecs -> metrics -> report) runs and writes every artifact.
"""

import json

import numpy as np
import pytest
from PIL import Image

from vision_banana import demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    results = demo.run_demo(out, config_arg="quick=1", num_scenes=8, num_devices=2,
                            generation_samples=2, log=lambda message: None)
    return out, results


def test_quick_demo_writes_every_artifact(quick_run):
    out, results = quick_run
    for name in ("report.md", "results.json", "loss_curve.png", "grid_depth.png",
                 "grid_normals.png", "grid_semantic.png", "grid_instance.png",
                 "grid_generation.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("loss_curve.png", "grid_depth.png", "grid_generation.png"):
        image = np.asarray(Image.open(out / name))
        assert image.ndim == 3 and image.shape[0] > 32 and image.std() > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["timings"]["wall_s"]) == set(demo.STAGES)
    assert saved["all_beat_baseline"] == results["all_beat_baseline"]


def test_report_table_has_every_task_with_its_baseline(quick_run):
    out, _ = quick_run
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "|---" not in line]
    for task, metrics in demo.HEADLINE.items():
        for metric, _ in metrics:
            row = [r for r in rows if r.startswith(f"| {task} |")]
            assert row, f"no row for {task} in the results table"
        # model, baseline and ceiling columns are numbers
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        assert all(_is_number(c) for c in cells[2:5]), cells
    assert "trivial baseline" in report and "loss_curve.png" in report


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
