"""cllnn-export run: one command to a report; re-runs redo only what changed, kills resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cllnn_edge.data import load_splits
from runtime.machine import CpuInfo, cpu_info

pytestmark = pytest.mark.slow  # trains and converts through the CLI

CLI = str(Path(sys.executable).parent / "cllnn-export")
CONFIG = (
    "[train]\nepochs = 1\n"
    '[export]\nformats = ["tflite-fp32", "tflite-int8"]\n'
    # one epoch: a weaker model, so the int8 gate is relaxed; the defaults are tested in test_train_convert
    "[tolerances.int8]\nmin_top1 = 0.9\nmax_accuracy_drop = 0.05\n"
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
def first_process(tmp_path_factory: pytest.TempPathFactory,
                  config: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("run") / "out"
    done = _run(out, config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done


@pytest.fixture(scope="module")
def first_run(first_process: tuple[Path, subprocess.CompletedProcess[str]]) -> tuple[Path, str]:
    out, done = first_process
    return out, done.stdout


# What TensorFlow and absl print by themselves; `run` hides it unless --verbose (make demo stays readable).
TENSORFLOW_NOISE = ("triggered tf.function retracing", "WARNING:tensorflow", "WARNING:absl",
                    "This TensorFlow binary is optimized", "cpu_feature_guard")


def test_run_prints_a_short_progress_log_without_tensorflow_noise(
    first_process: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    _, done = first_process
    assert len(done.stdout.splitlines()) < 150, done.stdout
    for noise in TENSORFLOW_NOISE:
        assert noise not in done.stdout + done.stderr, (noise, done.stderr[-3000:])


def test_run_writes_the_report(first_run: tuple[Path, str]) -> None:
    out, stdout = first_run
    for name in ("train: running", "convert: running", "parity: running", "bench: running", "select: running"):
        assert name in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"]
    assert set(report["stages"]) == {"train", "convert", "parity", "bench", "select"}
    assert {r["export_format"] for r in report["bench"]["results"]} == {"tflite-fp32", "tflite-int8"}
    assert {r["batch"] for r in report["bench"]["results"]} == {1, 64}
    markdown = (out / "report.md").read_text()
    assert "| tflite-int8 |" in markdown and "nan" not in markdown
    cpu = cpu_info()  # bench.json names the CPU class its figures came from
    assert CpuInfo.from_record(report["bench"]["machine"]) == cpu
    assert f"CPU class {cpu.cpu_class}." in markdown
    chosen = report["selection"]["chosen"]  # the report opens with the choice on this machine
    assert markdown.splitlines()[2].startswith(f"**Deploy on this machine ({cpu.cpu_class}): {chosen} — p50 ")
    assert sorted(p.name for p in (out / "deploy").iterdir()) == sorted([chosen, "manifest.json", "selection.json"])
    for line in ("epoch 1/1: loss", "train: done in", "[2/2] tflite-int8     converting (calibrating",
                 "convert: done in", "parity: done in", "bench: done in", "select: done in", "report: done in"):
        assert line in stdout, line


def test_html_report_is_self_contained(first_run: tuple[Path, str]) -> None:
    out, _ = first_run
    page = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    assert set(report["plots"]) == {"training", "confusion_trained", "confusion_int8", "latency",
                                    "tradeoff"}
    sources = re.findall(r"<img src='([^']+)'", page)
    assert sorted(sources) == sorted(report["plots"].values())
    for source in sources:
        assert (out / source).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", source
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "the report must not fetch anything"
    for section in ("All formats", "Choice on this machine", "Training", "Confusion matrices", "Parity per format",
                    "What the unroller removed", "Configuration", "Environment"):
        assert f"<h2>{section}" in page
    assert "tflite-int8: pass" in page and ">nan<" not in page
    assert f"<td>{cpu_info().cpu_class}</td>" in page


def test_html_report_renders_in_headless_chromium(first_run: tuple[Path, str]) -> None:
    """Every image loads with the network closed, and a screenshot is taken (kept beside the report)."""
    out, _ = first_run
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make test` installs Debian's chromium package")
        pytest.skip("chromium not installed (make test installs Debian's chromium where it can)")
    url = (out / "report.html").resolve().as_uri()
    dom = _chromium(browser, out, "--dump-dom", url)
    check = re.search(r'id="image-check"[^>]*data-missing="(\d+)"[^>]*>([^<]*)<', dom)
    assert check is not None, dom[-2000:]
    assert check.group(1) == "0" and "all 5 loaded" in check.group(2), check.group(2)
    shot = out / "report-screenshot.png"
    _chromium(browser, out, f"--screenshot={shot}", "--window-size=1200,4000", url)
    header = shot.read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (1200, 4000)


def _chromium(browser: str, out: Path, *args: str) -> str:
    """Headless, no GPU, background networking off; a fresh profile each time."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_rerun_reuses_every_stage_and_a_change_redoes_only_its_part(
    first_run: tuple[Path, str], config: Path, tmp_path: Path
) -> None:
    out, _ = first_run
    model = out / "train" / "model.keras"
    mtime = model.stat().st_mtime_ns
    again = _run(out, config)
    assert again.returncode == 0
    assert again.stdout.count("reused") == 5 and model.stat().st_mtime_ns == mtime
    changed = tmp_path / "changed.toml"
    changed.write_text(CONFIG.replace("min_top1 = 0.9", "min_top1 = 0.91"))
    partial = _run(out, changed)
    assert partial.returncode == 0
    assert "parity: running" in partial.stdout and "select: running" in partial.stdout  # both gate on it
    for stage in ("train", "convert", "bench"):
        assert f"{stage}: reused" in partial.stdout
    assert json.loads((out / "parity.json").read_text())["tolerances"]["int8"]["min_top1"] == 0.91
    (out / ".stages" / "convert.json").unlink()  # as after an interrupted export
    redone = _run(out, changed)
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert "train: reused" in redone.stdout
    for stage in ("convert", "parity", "bench", "select"):  # what reads the new files runs again
        assert f"{stage}: running" in redone.stdout, stage


def test_killed_during_export_resumes_without_retraining(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([CLI, "run", "--config", str(config), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        for line in process.stdout:  # formats convert side by side: one done, the other under way
            if re.match(r"\[\d/2\] \S+\s+ok ", line):
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
