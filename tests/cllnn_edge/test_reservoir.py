"""The liquid reservoir: the seed's initialisation and the leaky-tanh cell."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from cllnn_edge.reservoir import LiquidCell, init_reservoir, spectral_radius


@pytest.mark.parametrize(("dim", "radius"), [(512, 0.9), (64, 1.3), (16, 0.5)])
def test_stored_reservoir_has_the_exact_spectral_radius(dim: int, radius: float) -> None:
    cell = LiquidCell(dim, leak_rate=0.2, spectral_radius=radius, seed=3)
    cell.build((None, 40))
    stored = cell.recurrent_kernel.numpy()  # float32, as the model uses it
    assert stored.dtype == np.float32
    assert abs(spectral_radius(stored) - radius) < 1e-6


def test_one_seed_reproduces_both_matrices() -> None:
    w_res_a, w_in_a = init_reservoir(30, 20, 0.9, seed=11)
    w_res_b, w_in_b = init_reservoir(30, 20, 0.9, seed=11)
    np.testing.assert_array_equal(w_res_a, w_res_b)
    np.testing.assert_array_equal(w_in_a, w_in_b)
    w_res_c, w_in_c = init_reservoir(30, 20, 0.9, seed=12)
    assert not np.allclose(w_res_a, w_res_c) and not np.allclose(w_in_a, w_in_c)


def test_matrices_come_from_separate_generators() -> None:
    # W_res does not depend on the input size: changing D leaves it untouched.
    w_res_small, _ = init_reservoir(10, 20, 0.9, seed=5)
    w_res_large, w_in_large = init_reservoir(1000, 20, 0.9, seed=5)
    np.testing.assert_array_equal(w_res_small, w_res_large)
    assert w_in_large.shape == (20, 1000)
    assert abs(w_in_large.std() - 0.1) < 0.005  # randn * 0.1


def _reference_run(x: np.ndarray, w_res: np.ndarray, w_in: np.ndarray, leak: float) -> np.ndarray:
    """The seed's equation, step by step, in float64."""
    state = np.zeros((x.shape[0], w_res.shape[0]))
    outputs = []
    for t in range(x.shape[1]):
        state = (1 - leak) * state + leak * np.tanh(x[:, t] @ w_in.T + state @ w_res.T)
        outputs.append(state)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("unroll", [False, True])
def test_cell_follows_the_seed_equation(unroll: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 12)).astype(np.float32)
    cell = LiquidCell(8, leak_rate=0.3, spectral_radius=0.9, seed=1)
    layer = keras.layers.RNN(cell, return_sequences=True, unroll=unroll)
    got = keras.ops.convert_to_numpy(layer(x))
    w_res, w_in = init_reservoir(12, 8, 0.9, seed=1)
    expected = _reference_run(x.astype(np.float64), w_res, w_in, 0.3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_fixed_weights_are_non_trainable_and_absent_from_the_config() -> None:
    cell = LiquidCell(16, leak_rate=0.2, spectral_radius=0.9, seed=2)
    layer = keras.layers.RNN(cell)
    layer(np.zeros((1, 1, 6), np.float32))
    assert layer.trainable_weights == []
    assert {w.name for w in layer.non_trainable_weights} == {"input_kernel", "recurrent_kernel"}
    config = keras.saving.serialize_keras_object(layer)
    text = json.dumps(config)
    assert len(text) < 2000, "weights must not be serialised into the config"
    rebuilt = keras.saving.deserialize_keras_object(json.loads(text))
    rebuilt(np.zeros((1, 1, 6), np.float32))
    for mine, theirs in zip(layer.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # same seed, same matrices


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"units": 0}, "units must be > 0, got 0"), ({"leak_rate": 0.0}, r"leak_rate must be in")],
)
def test_cell_rejects_bad_hyperparameters(kwargs: dict, message: str) -> None:
    args = {"units": 4, "leak_rate": 0.2, "spectral_radius": 0.9, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        LiquidCell(**args)
