"""cllnn-export run: one command to a report; re-runs redo only what changed, kills resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cllnn_edge.data import load_splits

CLI = str(Path(sys.executable).parent / "cllnn-export")
CONFIG = (
    "[train]\nepochs = 1\n"
    '[export]\nformats = ["tflite-fp32", "tflite-int8"]\n'
    # one epoch: a weaker model, so the int8 gate is relaxed; the defaults are tested in test_train_convert
    "[tolerances]\nquantized_min_top1 = 0.9\nquantized_max_accuracy_drop = 0.05\n"
)


def _run(out: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "run", "--config", str(config), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, config: Path) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run") / "out"
    done = _run(out, config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def test_run_writes_the_report(first_run: tuple[Path, str]) -> None:
    out, stdout = first_run
    for name in ("train: running", "convert: running", "parity: running", "bench: running"):
        assert name in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and set(report["stages"]) == {"train", "convert", "parity", "bench"}
    assert {r["export_format"] for r in report["bench"]["results"]} == {"tflite-fp32", "tflite-int8"}
    assert {r["batch"] for r in report["bench"]["results"]} == {1, 64}
    markdown = (out / "report.md").read_text()
    assert "| tflite-int8 |" in markdown and "nan" not in markdown


def test_rerun_reuses_every_stage_and_a_change_redoes_only_its_part(
    first_run: tuple[Path, str], config: Path, tmp_path: Path
) -> None:
    out, _ = first_run
    model = out / "train" / "model.keras"
    mtime = model.stat().st_mtime_ns
    again = _run(out, config)
    assert again.returncode == 0
    assert again.stdout.count("reused") == 4 and model.stat().st_mtime_ns == mtime
    changed = tmp_path / "changed.toml"
    changed.write_text(CONFIG.replace("quantized_min_top1 = 0.9", "quantized_min_top1 = 0.91"))
    partial = _run(out, changed)
    assert partial.returncode == 0
    assert "parity: running" in partial.stdout
    for stage in ("train", "convert", "bench"):
        assert f"{stage}: reused" in partial.stdout
    assert json.loads((out / "parity.json").read_text())["tolerances"]["quantized_min_top1"] == 0.91


def test_killed_during_export_resumes_without_retraining(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([CLI, "run", "--config", str(config), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        for line in process.stdout:
            if line.startswith("[1/2] tflite-fp32"):  # converting: one format done, one under way
                break
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert not (out / "artifacts" / "manifest.json").exists()
    finals = [p for p in (out / "artifacts").iterdir() if not p.name.startswith(".")]
    assert finals == [], f"half-done export left {finals}"
    model_mtime = (out / "train" / "model.keras").stat().st_mtime_ns
    resumed = _run(out, config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "train: reused" in resumed.stdout and "convert: running" in resumed.stdout
    assert (out / "train" / "model.keras").stat().st_mtime_ns == model_mtime
    assert not list((out / "artifacts").glob(".work-*"))


def test_npz_in_keras_layout_runs_end_to_end(tmp_path: Path, config: Path) -> None:
    splits = load_splits("embedded")
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=np.concatenate([splits.train.x, splits.val.x]),
             y_train=np.concatenate([splits.train.y, splits.val.y]),
             x_test=splits.test.x, y_test=splits.test.y)
    done = _run(tmp_path / "out", config, "--data", str(npz))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["training"]["data"]["source"] == str(npz)
    assert report["parity"]["data"] == str(npz)
