"""The README's main job, run once for the end-to-end tests that inspect its results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "cllnn-export")

# The quantized rows of the gate for a model trained 3 epochs, as .github/workflows/parity.yml
# gates one. Such a model has many test images near a class boundary, and int8 rounding flips
# some of them: over model seeds 0-4 (benchmarks/SPREAD.md, case t1, x86 AVX-512 VNNI,
# 2026-11-29) int8 TFLite disagreed with Keras on 1-6 of the 1,000 test images, int8 ONNX on
# 1-9, dynamic-range on 0-1; the default limit (min_top1 0.99: at most 10) has one image of
# slack at the worst seed, and another CPU class trains another model from the same seed (as
# a change of seed does). 0.98 allows 20: twice the worst seen. A fully trained model is gated
# at the default 0.99 (README: 99.8% agreement after the seed's 10 epochs).
BRIEF_TRAINING_GATE = {"int8": 0.98, "dynamic-int8": 0.98}  # min_top1 per quantized precision


def gate_flags() -> list[str]:
    """``BRIEF_TRAINING_GATE`` as ``cllnn-export parity`` flags (as the workflow passes them)."""
    return [flag for precision, limit in BRIEF_TRAINING_GATE.items()
            for flag in ("--tolerance", f"{precision}.min_top1={limit}")]


def gate_config(path: Path) -> Path:
    """``BRIEF_TRAINING_GATE`` as a TOML file, for commands that take --config."""
    path.write_text("".join(f"[tolerances.{precision}]\nmin_top1 = {limit}\n"
                            for precision, limit in BRIEF_TRAINING_GATE.items()))
    return path


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
