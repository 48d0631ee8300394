"""Where a file's output error enters: ``Comparison.main_error_stage`` on constructed stage outputs.

The stage outputs are built by hand (a reference and a candidate that adds
noise at chosen stages and carries it on, as a stage probe does), so the
expected attribution is known; the same property on a trained and converted
CLLNN is exercised by tests/export/test_parity.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runtime.checks.compare import Comparison, StageContribution, StageResult, compare
from runtime.checks.parity import ArtifactParity
from runtime.checks.tolerances import Tolerance

STAGES = ("cnn", "reservoir", "lstm", "output")
LOOSE = Tolerance(max_abs=1.0, stage_nrmse=10.0)


def _reference(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    outputs = {stage: rng.normal(0.0, scale, (32, 16)).astype(np.float32)
               for stage, scale in zip(STAGES[:-1], (5.0, 0.3, 0.05))}  # scales differ, as the model's do
    logits = rng.normal(size=(32, 10))
    outputs["output"] = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    return outputs


def _candidate(reference: dict[str, np.ndarray], noise: dict[str, float]) -> dict[str, np.ndarray]:
    """``reference`` with noise of NRMSE ``noise[stage]`` added at each named stage and carried to every later one.

    The noise a stage adds is scaled by each later stage's own spread, as error
    entering early shows up, normalised, in every output after it.
    """
    rng = np.random.default_rng(1)
    carried, out = 0.0, {}
    for stage, ref in reference.items():
        carried += noise.get(stage, 0.0)
        unit = rng.normal(size=ref.shape)
        unit /= np.sqrt(np.mean(unit**2))
        out[stage] = ref + carried * float(ref.std()) * unit
    return out


def _compare(noise: dict[str, float]) -> Comparison:
    reference = _reference()
    candidate = _candidate(reference, noise)
    return compare(reference, candidate["output"], LOOSE, stages=candidate)


def test_error_entering_only_at_the_reservoir_is_all_the_reservoir_s() -> None:
    comparison = _compare({"reservoir": 0.2})
    assert [s.stage for s in comparison.stages] == list(STAGES)
    main = comparison.main_error_stage
    assert main is not None and main.stage == "reservoir"
    assert main.share == pytest.approx(1.0)
    assert main.rise == pytest.approx(0.2, rel=1e-3)
    assert main.describe() == "reservoir (100% of the rise in normalised RMSE)"


def test_the_largest_rise_wins_over_the_largest_nrmse() -> None:
    """The output carries the most error, but most of it entered at the LSTM: the rise names the LSTM."""
    comparison = _compare({"cnn": 0.01, "reservoir": 0.01, "lstm": 0.07, "output": 0.01})
    main = comparison.main_error_stage
    assert max(comparison.stages, key=lambda s: s.nrmse).stage == "output"
    assert main is not None and main.stage == "lstm"
    assert main.share == pytest.approx(0.7, abs=0.01)


def test_falling_error_is_left_out_of_the_share() -> None:
    stages = (StageResult("cnn", 0.1, 0.3, 1.0, True), StageResult("reservoir", 0.1, 0.1, 1.0, True),
              StageResult("lstm", 0.1, 0.2, 1.0, True), StageResult("output", 0.1, 0.2, 1.0, True))
    main = Comparison(metrics={}, checks=(), stages=stages).main_error_stage
    assert main == StageContribution("cnn", 0.3, pytest.approx(0.75))  # rises 0.3, -0.2, +0.1, 0


def test_no_stages_or_no_error_name_no_stage() -> None:
    reference = _reference()
    assert compare(reference, reference["output"], LOOSE).main_error_stage is None  # no stage probe
    assert compare(reference, reference["output"], LOOSE, stages=reference).main_error_stage is None  # exact
    unlocated = Tolerance(max_abs=1.0)  # a row with no stage limit compares no stages
    assert compare(reference, reference["output"], unlocated, stages=reference).main_error_stage is None


def test_the_first_stage_that_breaks_takes_all_the_error() -> None:
    reference = _reference()
    candidate = _candidate(reference, {"cnn": 0.01})
    candidate["lstm"] = np.full_like(reference["lstm"], np.nan)
    main = compare(reference, candidate["output"], LOOSE, stages=candidate).main_error_stage
    assert main == StageContribution("lstm", math.inf, 1.0)


def _parity(precision: str, comparison: Comparison) -> ArtifactParity:
    return ArtifactParity(**vars(comparison), format=f"tflite-{precision}", file="a.tflite", precision=precision)


def test_the_attribution_round_trips_through_parity_json() -> None:
    result = _parity("int8", _compare({"reservoir": 0.2, "lstm": 0.05}))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["main_error_stage"]["stage"] == "reservoir"
    assert data["main_error_stage"]["share"] == pytest.approx(0.8, abs=0.01)
    again = ArtifactParity.from_dict(data)
    assert again == result and again.main_error_stage == result.main_error_stage
    assert again.error_entry is not None and again.error_entry.stage == "reservoir"
    older = {k: v for k, v in data.items() if k != "main_error_stage"}  # parity.json from before the key
    assert ArtifactParity.from_dict(older).main_error_stage == result.main_error_stage
    no_probe = _parity("int8", Comparison(metrics={"max_abs": 0.0}, checks=()))
    assert no_probe.to_dict()["main_error_stage"] is None


def test_float32_files_name_no_stage_to_keep() -> None:
    """A float32 file's error is rounding noise: the attribution is recorded, but not offered as advice."""
    result = _parity("float32", _compare({"cnn": 1e-7}))
    assert result.main_error_stage is not None and not result.quantized
    assert result.error_entry is None
