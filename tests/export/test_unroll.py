"""The unroller: static ops only, the same numbers, dead work left out and accounted for."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cllnn_edge.config import ModelConfig
from cllnn_edge.errors import ModelError
from cllnn_edge.model import build_model
from cllnn_edge.preprocessing import fit_standardizer
from export.errors import EquivalenceError, ExportError
from export.graph.reference import trained_reference
from export.graph.stages import PROBE_OUTPUTS
from export.graph.unroll import prove_equivalent, unroll
from runtime.checks.tolerances import ToleranceConfig

SMALL = dict(conv_filters=(4, 8, 16), reservoir_dim=48, lstm_units=12)
FLOAT32 = ToleranceConfig()["float32"]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from cllnn_edge.data import load_splits

    return load_splits("embedded").test.x[:64]


def _model(images: np.ndarray, **overrides) -> keras.Model:
    cfg = ModelConfig(**{**SMALL, **overrides})
    return build_model(cfg, fit_standardizer(images))


@pytest.mark.parametrize("length", [1, 3, 9])
def test_unrolled_model_matches_the_trained_one(images: np.ndarray, length: int) -> None:
    trained = _model(images, sequence_length=length, seed=length)
    result = unroll(trained)
    comparison = prove_equivalent(trained_reference(trained), result, images, FLOAT32)
    assert comparison.metrics["max_abs"] <= 1e-5 and comparison.passed
    assert [stage.stage for stage in comparison.stages] == list(PROBE_OUTPUTS)
    assert comparison.first_failing_stage is None
    kinds = {type(layer).__name__ for layer in result.model.layers}
    assert not kinds & {"RNN", "LSTM", "GRU", "SimpleRNN"}, kinds


def test_dead_work_at_length_one_is_not_in_the_graph(images: np.ndarray) -> None:
    result = unroll(_model(images, sequence_length=1))
    names = {layer.name for layer in result.model.layers}
    assert "reservoir_rec" not in names and "lstm_forget_in" not in names
    assert not any(name.endswith("_rec") for name in names)
    r, u = SMALL["reservoir_dim"], SMALL["lstm_units"]
    summary = result.removed_summary()
    assert summary["weight_bytes"] == 4 * (r * r + u * 4 * u + r * u + u)
    assert summary["macs_per_image"] == r * r + r + u * 4 * u + r * u + u


def test_longer_sequences_keep_the_weights_and_save_step_one_work(images: np.ndarray) -> None:
    result = unroll(_model(images, sequence_length=3))
    names = {layer.name for layer in result.model.layers}
    assert {"reservoir_rec", "lstm_forget_in", "lstm_forget_rec"} <= names
    assert result.removed_summary()["weight_bytes"] == 0
    assert result.removed_summary()["macs_per_image"] > 0


def test_seed_defaults_leave_out_the_reservoir_matrix(images: np.ndarray) -> None:
    trained = build_model(ModelConfig())
    result = unroll(trained)
    removed = {item.what: item for item in result.removed}
    reservoir = removed["reservoir recurrent matmul h0 @ W_res at step 1"]
    assert reservoir.weight_bytes == 512 * 512 * 4  # 1 MiB of float32
    saved = trained.count_params() - result.model.count_params()
    assert saved * 4 == result.removed_summary()["weight_bytes"] == 1_573_376


def test_a_wrong_weight_is_caught_and_located(images: np.ndarray) -> None:
    trained = _model(images, sequence_length=3)
    result = unroll(trained)
    layer = result.model.get_layer("lstm_cell_in")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias + 0.5])
    with pytest.raises(EquivalenceError, match=r"first exceeds its stage limit after the 'lstm' stage"):
        prove_equivalent(trained_reference(trained), result, images, FLOAT32)


def test_a_model_that_is_not_a_cllnn_is_refused() -> None:
    inputs = keras.Input((28, 28, 1))
    other = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="not a CLLNN model"):
        unroll(other)


@pytest.mark.parametrize("variant", ["float-front", "bounded"])
@pytest.mark.parametrize("length", [1, 3])
def test_int8_graph_variants_stay_within_their_bound(images: np.ndarray, variant: str, length: int) -> None:
    """The graphs int8 files are calibrated on move the outputs by the reservoir clip only (< 1e-3)."""
    trained = _model(images, sequence_length=length, seed=length)
    int8_row = ToleranceConfig()["int8"]
    result = unroll(trained, int8_graph=variant)
    comparison = prove_equivalent(trained_reference(trained), result, images, int8_row.of_int8_graph())
    assert comparison.passed and comparison.metrics["max_abs"] <= 1e-3
    assert result.name == f"{variant} int8 graph"
    names = {layer.name for layer in result.model.layers}
    if variant == "float-front":
        assert result.float_layers == ("standardize", "conv1", "pool1")
        assert set(result.float_layers) <= names and "conv1_outliers" not in names
    else:
        assert result.float_layers == () and {"conv1", "conv1_outliers", "clip_pixels"} <= names


def test_an_unknown_int8_graph_is_refused(images: np.ndarray) -> None:
    with pytest.raises(ExportError, match="unknown int8 graph 'tiny'.*float-front, bounded, plain"):
        unroll(_model(images), int8_graph="tiny")
