"""The README's main job, run once for the end-to-end tests that inspect its results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cllnn_edge.data import Split, load_splits
from export.targets.emulated import missing_tools
from tests.e2e.helpers import CLI, EMULATED_TARGETS, gate_config


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`cllnn-export run --data embedded` as `make demo` runs it, at 3 epochs instead of the
    seed's 10 to keep CI short: the seed's model at T = 1, every format, parity, bench, report; and,
    where qemu-user is installed (``make test`` installs it), the files taken to the Raspberry Pi 4 and
    5 CPUs, emulated, by ``--target`` (``EMULATED_TARGETS``: the int8, dynamic and float32 files there). Returns (model.keras, artifacts directory, the finished command)."""
    root = tmp_path_factory.mktemp("seed")
    out, config = root / "run", gate_config(root / "gate.toml")
    done = subprocess.run([CLI, "run", "--data", "embedded", "--epochs", "3", "--out", str(out),
                           "--config", str(config), *(EMULATED_TARGETS if not missing_tools() else ())],
                          capture_output=True, text=True, timeout=2400)
    return out / "train" / "model.keras", out / "artifacts", done


@pytest.fixture(scope="module")
def test_split() -> Split:
    """The embedded test split: the images every export is compared on."""
    return load_splits("embedded").test
