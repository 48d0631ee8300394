"""A run directory made by an older cllnn-edge still loads: the JSON layouts may grow, never break.

tests/fixtures/run_a8fda90 is the run directory `cllnn-export run --config config.toml --data embedded`
wrote at commit a8fda90 (before the redesign of issue 25): a small CLLNN (config.toml there), 4 epochs,
all eight formats. Its plots, report and trained model.keras are left out (the report is rebuilt here,
the model is not needed by anything that reads a run directory after training). Three int8 files of that
tiny model fail their check, so the fixture also holds failures the current code must still see.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.layout import RunLayout
from export.report.build import write_report

FIXTURE = Path(__file__).parent / "fixtures" / "run_a8fda90"


@pytest.fixture()
def old_run(tmp_path: Path) -> Path:
    """A copy of the old run directory (the commands under test write into it)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def _old_verified(run: Path) -> dict[str, bool]:
    """Which formats the old code's select found verified, from its selection.json."""
    selection = json.loads((run / "selection.json").read_text())
    return {c["format"]: c["verified"] for c in selection["candidates"]}


def test_verify_gives_the_old_runs_verdicts(old_run: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "runtime.cli.verify", str(old_run / "artifacts"),
                             "--json", str(old_run / "verify.json")], capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr  # three int8 files fail, as they did
    verdicts = {r["format"]: r["passed"] for r in json.loads((old_run / "verify.json").read_text())["results"]}
    assert verdicts == _old_verified(old_run)
    assert sorted(f for f, ok in verdicts.items() if not ok) == ["onnx-int8", "tflite-int8", "tflm-int8"]


def test_select_chooses_one_of_the_files_the_old_run_verified(old_run: Path) -> None:
    out = old_run / "deploy-new"
    result = subprocess.run([sys.executable, "-m", "runtime.cli.select", str(old_run / "artifacts"),
                             "--out", str(out), "--runs", "20", "--warmup", "5"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    chosen = [p.name for p in out.iterdir() if p.suffix in (".tflite", ".onnx")]
    old = json.loads((old_run / "selection.json").read_text())
    verified_files = {c["file"] for c in old["candidates"] if c["verified"]}
    assert len(chosen) == 1 and chosen[0] in verified_files


def test_the_report_is_rebuilt_from_the_old_runs_files(old_run: Path) -> None:
    stages = {path.stem: {"key": json.loads(path.read_text())["key"], "ran": False, "seconds": 0.0}
              for path in (old_run / ".stages").glob("*.json")}
    data = {"source": "embedded", "train": 3600, "val": 400, "test": 1000, "image_shape": [28, 28, 1],
            "classes": 10, "fingerprint": "f42bb758316a"}
    report = write_report(RunLayout(old_run), stages, data)
    page = (old_run / "report.html").read_text()
    for row in report["formats"]:
        assert row["format"] in page
    assert {row["format"] for row in report["formats"]} == set(_old_verified(old_run))
    assert (old_run / "plots" / "tradeoff.png").stat().st_size > 0
    assert report["devices"] == [] and "## Devices" not in (old_run / "report.md").read_text()  # no devices/
