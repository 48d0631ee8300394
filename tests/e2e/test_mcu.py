"""A model sized for a microcontroller, as the README's example config builds it: trained, exported for
TensorFlow Lite Micro with its C sources, held to its board at export, and chosen (or not) for a board
by `cllnn-bench select`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import runtime
from runtime.artifacts.manifest import load_manifest
from tests.e2e.helpers import CLI, gate_flags, run_cli

pytestmark = pytest.mark.slow  # trains and converts
tflite_micro = pytest.importorskip("tflite_micro", reason="the tflm extra is not installed")

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "nano33-ble.toml"
BENCH = str(Path(CLI).with_name("cllnn-bench"))


def test_the_nano33_config_trains_exports_fits_its_board_and_select_holds_files_to_boards(tmp_path: Path) -> None:
    out = tmp_path / "run"  # as `cllnn-export run` lays it out (the main job covers run's other stages)
    trained = run_cli("train", "--config", str(CONFIG), "--epochs", "2", "--out", str(out / "train"))
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    done = run_cli("convert", str(out / "train" / "model.keras"), "--config", str(CONFIG),
                   "--out", str(out / "artifacts"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fits_budget ok" in done.stdout
    (entry,) = load_manifest(out / "artifacts").artifacts
    assert (entry.format, entry.runtime) == ("tflm-int8", "tflm")
    fits = entry.details.checks["fits_budget"]
    assert fits.passed and fits.expected == "fits nano33-ble (1,024 KiB flash, 256 KiB RAM)"
    mcu = entry.details.mcu
    assert mcu is not None and mcu.flash_bytes < 512 * 1024 and mcu.arena_bytes < 256 * 1024
    assert [s.file for s in mcu.sources] == ["mcu/cllnn_model.h", "mcu/cllnn_model.cc"]

    # verified at the brief-training gate, as the main job is; an arena of ~150 KiB (conv1's float32
    # output) is more than an nRF52832's 64 KiB of RAM
    small = subprocess.run([BENCH, "select", str(out / "artifacts"), "--out", str(tmp_path / "nrf"),
                            "--board", "nrf52832", "--runs", "20", "--warmup", "2", *gate_flags()],
                           capture_output=True, text=True, timeout=600)
    assert small.returncode == 1, small.stdout[-2000:] + small.stderr[-2000:]
    assert "NONE CHOSEN: no file fits the budget; tightest constraint: --ram-kib 64 excludes 1 of 1" in small.stdout
    assert not (tmp_path / "nrf").exists()

    deploy = tmp_path / "nano"
    chosen = subprocess.run([BENCH, "select", str(out / "artifacts"), "--out", str(deploy), "--board", "nano33-ble",
                             "--runs", "20", "--warmup", "2", *gate_flags()],
                            capture_output=True, text=True, timeout=600)
    assert chosen.returncode == 0, chosen.stdout[-2000:] + chosen.stderr[-2000:]
    assert sorted(str(p.relative_to(deploy)) for p in deploy.rglob("*")) == [
        entry.file, "manifest.json", "mcu", "mcu/cllnn_model.cc", "mcu/cllnn_model.h", "selection.json"]
    with runtime.load(deploy / entry.file) as model:  # the deployed manifest says tflm, with its arena
        assert model.backend == "tflm" and model.arena_bytes == mcu.arena_bytes
    assert json.loads((deploy / "selection.json").read_text())["budget"]["max_ram_kib"] == 256
