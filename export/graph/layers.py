"""Keras layers the static graph needs beyond Keras' own (registered, so a saved graph reloads)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="cllnn_edge")
class Clip(keras.layers.Layer):
    """Elementwise clip to [low, high]; bounds are scalars or arrays broadcast to the input."""

    def __init__(self, low: float | list, high: float | list, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low = low
        self.high = high

    def call(self, inputs: Any) -> Any:
        low = keras.ops.convert_to_tensor(np.asarray(self.low, np.float32))
        high = keras.ops.convert_to_tensor(np.asarray(self.high, np.float32))
        return keras.ops.minimum(keras.ops.maximum(inputs, low), high)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="cllnn_edge")
class TakeStep(keras.layers.Layer):
    """Time step ``index`` of a (N, T, F) tensor, as (N, F)."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def call(self, inputs: Any) -> Any:
        return inputs[:, self.index]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "index": self.index}
