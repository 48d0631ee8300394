"""The CLLNN builder: the seed's architecture and parameter count, raw pixels in."""

from __future__ import annotations

import numpy as np
import pytest

from cllnn_edge.config import ModelConfig
from cllnn_edge.model import (
    RESERVOIR,
    SEED_TRAINABLE_PARAMS,
    STANDARDIZE,
    build_model,
    trainable_params,
)


@pytest.mark.parametrize("length", [1, 3, 9])
def test_trainable_parameters_equal_the_seeds(length: int) -> None:
    model = build_model(ModelConfig(sequence_length=length))
    assert trainable_params(model) == SEED_TRAINABLE_PARAMS == 422_154
    reservoir_input = model.get_layer(RESERVOIR).input.shape
    assert tuple(reservoir_input) == (None, length, 1152 // length)


def test_only_the_standardiser_and_reservoir_are_frozen() -> None:
    model = build_model(ModelConfig())
    frozen = {w.path.split("/")[0] for w in model.non_trainable_weights}
    assert frozen == {STANDARDIZE, RESERVOIR}
    assert model.layers[1].name == STANDARDIZE  # first layer after the input


@pytest.mark.parametrize("length", [1, 9])
def test_unrolled_and_looped_models_compute_the_same(length: int) -> None:
    cfg = ModelConfig(sequence_length=length, conv_filters=(4, 8, 16), reservoir_dim=32, lstm_units=8)
    unrolled = build_model(cfg, unroll=True)
    looped = build_model(cfg, unroll=False)
    looped.set_weights(unrolled.get_weights())
    x = np.random.default_rng(1).integers(0, 256, (6, 28, 28, 1)).astype(np.float32)
    probs = unrolled(x).numpy()
    np.testing.assert_allclose(probs, looped(x).numpy(), atol=1e-6)
    assert probs.shape == (6, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_same_seed_builds_the_same_reservoir() -> None:
    cfg = ModelConfig(reservoir_dim=16, lstm_units=4, conv_filters=(2, 2, 2))
    a = build_model(cfg).get_layer(RESERVOIR).get_weights()
    b = build_model(cfg).get_layer(RESERVOIR).get_weights()
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def test_an_rgb_model_of_another_size_takes_its_images_and_round_trips_its_config() -> None:
    from cllnn_edge.model import config_from_model

    cfg = ModelConfig(conv_filters=(4, 8), reservoir_dim=16, lstm_units=4, image_shape=(12, 20, 3), output_dim=5)
    model = build_model(cfg)
    x = np.random.default_rng(2).integers(0, 256, (3, 12, 20, 3)).astype(np.float32)
    assert model(x).shape == (3, 5)
    assert config_from_model(model) == cfg
