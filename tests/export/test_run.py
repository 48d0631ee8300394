"""``run_pipeline`` does each costly thing once: the data is loaded once for every stage, and the
trained model runs once per image set for the equivalence proofs, every format's checks and parity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import cllnn_edge.data
from cllnn_edge.config import Config
from export import reference
from export.run import run_pipeline

TINY = {
    "model": {"conv_filters": [4, 8, 16], "reservoir_dim": 32, "lstm_units": 8},
    "train": {"epochs": 1},
    "export": {"formats": ["tflite-fp32", "tflite-int8"], "calibration_size": 50},
    # A one-epoch toy model: the quantized gates are opened; this test counts work, not accuracy.
    "tolerances": {"int8": {"min_top1": 0.0, "max_accuracy_drop": 1.0, "convert_min_top1": 0.0}},
}


@pytest.mark.slow
def test_run_loads_the_data_once_and_runs_the_trained_model_once_per_image_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = cllnn_edge.data.load_splits

    def counted_load(source: str, **kwargs: object) -> cllnn_edge.data.Splits:
        loads.append(source)
        return real_load(source, **kwargs)

    image_sets: Counter[tuple[int, bytes]] = Counter()
    real_compute = reference.KerasRunner._compute

    def counted_compute(self: reference.KerasRunner, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.name.startswith("trained model"):
            image_sets[(len(batch), batch[:4].tobytes())] += 1
        return real_compute(self, batch)

    monkeypatch.setattr(cllnn_edge.data, "load_splits", counted_load)
    monkeypatch.setattr(reference.KerasRunner, "_compute", counted_compute)
    cfg = Config.from_dict(TINY)
    lines: list[str] = []
    state = run_pipeline(cfg, tmp_path / "run", data="embedded", progress=lines.append)

    assert all(stage["ran"] for stage in state.stages.values()), state.stages
    assert loads == ["embedded"]
    # convert checks on the first check_size test images, parity on the whole test split: with the
    # embedded data both are the same 1,000 images, so one set, computed once for both stages
    assert list(image_sets.values()) == [1], image_sets
    assert "unroll: float-front int8 graph" in "\n".join(lines)  # both proofs ran on it
