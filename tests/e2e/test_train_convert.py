"""Train then convert for T > 1, as a user runs it: every host format (all but tflm-int8) loads in its device runtime
and matches; and the CI workflow runs the commands this suite checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    ALL_FORMATS,
    LONG_SEQUENCE_GATE,
    assert_formats_match,
    gate_flags,
    run_cli,
)

pytestmark = pytest.mark.slow  # trains and converts full-size models


def _train_and_convert(tmp: Path, config_text: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    config = tmp / "config.toml"
    config.write_text(config_text)
    trained = run_cli("train", "--data", "embedded", "--out", str(tmp / "run"), "--config", str(config))
    assert trained.returncode == 0, trained.stderr[-3000:]
    artifacts = tmp / "run" / "artifacts"
    converted = run_cli("convert", str(tmp / "run" / "model.keras"), "--out", str(artifacts),
                        "--config", str(config))
    return tmp / "run" / "model.keras", artifacts, converted


# Every format but the microcontroller one: tflm-int8 is tflite-int8's file, converted the same way, on
# TFLM's kernels (the main job runs it); at T = 9 it would add ~30 s to the longest tests in CI.
HOST_FORMATS = json.dumps(sorted(ALL_FORMATS - {"tflm-int8"}))


# One length past the seed's T = 1: the unroller's steps are the same code at any T (3 and 9 were both
# run here until 2026-12-04, ~4 min each on 2 cores; T = 9's spread is in benchmarks/SPREAD.md).
@pytest.mark.parametrize("length", [3])
def test_longer_sequences_export_and_match(tmp_path: Path, test_split, length: int) -> None:
    model_path, artifacts, converted = _train_and_convert(
        tmp_path, f"[model]\nsequence_length = {length}\n[train]\nepochs = 3\n{LONG_SEQUENCE_GATE}"
                  f"[export]\nformats = {HOST_FORMATS}\n"
    )
    assert converted.returncode == 0, converted.stdout[-3000:] + converted.stderr[-3000:]
    assert_formats_match(model_path, artifacts, test_split.x)


def test_workflow_runs_the_commands_this_suite_checks() -> None:
    workflow = (Path(__file__).parents[2] / ".github" / "workflows" / "parity.yml").read_text()
    for command in ("cllnn-export train --data embedded --epochs 3",
                    "cllnn-export convert runs/ci/model.keras --out runs/ci/artifacts",
                    "cllnn-export parity runs/ci/model.keras runs/ci/artifacts"):
        assert command in workflow
    assert " ".join(gate_flags()) in " ".join(workflow.split())  # the gate this suite checks
    assert "--junit" in workflow and "upload-artifact" in workflow
