"""The README's main job, run once for the end-to-end tests that inspect its results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cllnn_edge.data import Split, load_splits
from tests.e2e.helpers import CLI, gate_config


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`cllnn-export run --data embedded` as `make demo` runs it, at 3 epochs instead of the
    seed's 10 to keep CI short: the seed's model at T = 1, every format, parity, bench, report.
    Returns (model.keras, artifacts directory, the finished command)."""
    root = tmp_path_factory.mktemp("seed")
    out, config = root / "run", gate_config(root / "gate.toml")
    done = subprocess.run([CLI, "run", "--data", "embedded", "--epochs", "3", "--out", str(out),
                           "--config", str(config)], capture_output=True, text=True, timeout=1800)
    return out / "train" / "model.keras", out / "artifacts", done


@pytest.fixture(scope="module")
def test_split() -> Split:
    """The embedded test split: the images every export is compared on."""
    return load_splits("embedded").test
