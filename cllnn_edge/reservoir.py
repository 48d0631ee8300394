"""The liquid reservoir: fixed random recurrent weights and the leaky-tanh cell.

Update, for an input sequence x_t of shape (batch, D) and state h of shape
(batch, R), with leak rate a::

    h_t = (1 - a) * h_{t-1} + a * tanh(x_t @ W_in.T + h_{t-1} @ W_res.T)

W_res (R, R) is a standard-normal matrix scaled to the exact spectral radius;
W_in (R, D) is standard normal times 0.1 (the seed's initialisation). Neither is
trained. Each matrix comes from its own generator spawned from one seed, so
one integer reproduces both.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

INPUT_WEIGHT_SCALE = 0.1


def spectral_radius(matrix: np.ndarray) -> float:
    """Largest absolute eigenvalue, computed in float64."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(matrix, dtype=np.float64)))))


def init_reservoir(
    input_dim: int, reservoir_dim: int, radius: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(w_res, w_in)`` in the seed's orientation: (R, R) and (R, D), float64;
    W_res scaled to spectral radius ``radius``."""
    res_rng, in_rng = np.random.default_rng(seed).spawn(2)
    w_res = res_rng.standard_normal((reservoir_dim, reservoir_dim))
    w_res *= radius / spectral_radius(w_res)
    w_in = in_rng.standard_normal((reservoir_dim, input_dim)) * INPUT_WEIGHT_SCALE
    return w_res, w_in


@keras.saving.register_keras_serializable(package="cllnn_edge")
class LiquidCell(keras.layers.Layer):
    """Keras RNN cell of the liquid reservoir (use inside ``keras.layers.RNN``).

    Weights are stored transposed for ``x @ kernel``: ``input_kernel`` (D, R) =
    W_in.T and ``recurrent_kernel`` (R, R) = W_res.T, both non-trainable, so
    they live in the model's weights file; the config holds only the
    hyperparameters and the seed.
    """

    def __init__(
        self,
        units: int,
        leak_rate: float,
        spectral_radius: float,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"LiquidCell units must be > 0, got {units}")
        if not 0 < leak_rate <= 1:
            raise ValueError(f"LiquidCell leak_rate must be in (0, 1], got {leak_rate}")
        self.units = units
        self.leak_rate = leak_rate
        self.spectral_radius = spectral_radius
        self.seed = seed
        self.state_size = units
        self.output_size = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        w_res, w_in = init_reservoir(input_dim, self.units, self.spectral_radius, self.seed)
        self.input_kernel = self.add_weight(
            shape=(input_dim, self.units),
            initializer=_constant(w_in.T),
            trainable=False,
            name="input_kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer=_constant(w_res.T),
            trainable=False,
            name="recurrent_kernel",
        )

    def call(self, inputs: Any, states: Any, training: bool | None = None) -> tuple[Any, list[Any]]:
        previous = states[0] if isinstance(states, (list, tuple)) else states
        drive = keras.ops.matmul(inputs, self.input_kernel) + keras.ops.matmul(
            previous, self.recurrent_kernel
        )
        state = (1.0 - self.leak_rate) * previous + self.leak_rate * keras.ops.tanh(drive)
        return state, [state]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "leak_rate": self.leak_rate,
            "spectral_radius": self.spectral_radius,
            "seed": self.seed,
        }


def _constant(value: np.ndarray) -> Any:
    """An initializer returning a fixed array (Keras' Constant takes scalars only)."""

    def initializer(shape: tuple[int, ...], dtype: Any = None) -> Any:
        if tuple(shape) != value.shape:
            raise ValueError(f"initializer built for shape {value.shape}, asked for {shape}")
        return keras.ops.convert_to_tensor(value, dtype=dtype or "float32")

    return initializer
