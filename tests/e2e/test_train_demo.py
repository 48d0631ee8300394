"""The README's main job, as a user runs it: train on the embedded digits, reload, predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

import cllnn_edge  # noqa: F401  (registers the custom layers for load_model)
from cllnn_edge.data import load_splits
from cllnn_edge.train import as_model_input


def test_demo_training_reaches_94_percent_and_reloads(tmp_path: Path) -> None:
    """Full-size seed model, 3 epochs on the embedded data (the acceptance run, ~20 s)."""
    out = tmp_path / "demo"
    script = Path(sys.executable).parent / "cllnn-export"
    result = subprocess.run(
        [str(script), "train", "--data", "embedded", "--epochs", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert history["final"]["val_accuracy"] >= 0.94
    assert history["trainable_params"] == 422_154
    assert "val accuracy" in result.stdout

    model = keras.saving.load_model(out / "model.keras")
    test = load_splits("embedded").test
    probs = model.predict(as_model_input(test), verbose=0)
    accuracy = float(np.mean(probs.argmax(axis=1) == test.y))
    assert abs(accuracy - history["final"]["test_accuracy"]) < 1e-6
