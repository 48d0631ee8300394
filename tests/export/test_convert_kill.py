"""kill -9 of ``cllnn-export convert`` during an export leaves no converter behind: the worker
(``python -m export.formats.worker``) and the tf2onnx process it started die with it (export.lifeline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cllnn_edge.config import Config
from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.train import train
from tests.export.test_lifeline import alive

pytestmark = [
    pytest.mark.slow,  # trains a tiny model, then starts a real export
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
CLI = str(Path(sys.executable).parent / "cllnn-export")
TINY = Config.from_dict({"model": {"conv_filters": [4, 8, 16], "reservoir_dim": 32, "lstm_units": 8},
                         "train": {"epochs": 1}})


def processes_of(marker: str) -> dict[int, str]:
    """Live processes whose command line names ``marker`` (the test's directory), pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and alive(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


def test_kill_9_of_convert_leaves_no_worker_or_tf2onnx_running(tmp_path: Path) -> None:
    full = load_splits("embedded")
    splits = Splits(Split(full.train.x[:300], full.train.y[:300]), full.val, full.test, "embedded")
    train(TINY, splits, tmp_path / "train", verbose=0)
    out = tmp_path / "artifacts"
    parent = subprocess.Popen([CLI, "convert", str(tmp_path / "train" / "model.keras"), "--out", str(out),
                               "--formats", "onnx-fp32"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        running: dict[int, str] = {}
        while time.monotonic() < deadline and parent.poll() is None:
            running = {pid: cmd for pid, cmd in processes_of(str(out)).items() if pid != parent.pid}
            if any("tf2onnx.convert" in cmd for cmd in running.values()):
                break
            time.sleep(0.1)
        assert parent.poll() is None, "convert ended before its converter could be caught running"
        assert any("export.formats.worker" in cmd for cmd in running.values()), running
        assert any("tf2onnx.convert" in cmd for cmd in running.values()), running
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while processes_of(str(out)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(str(out)) == {}, "left running after kill -9 of convert"
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)  # whatever the test's failure left
        except ProcessLookupError:
            pass
