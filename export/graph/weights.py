"""The trained CLLNN's weights, read once and split the way the static graph uses them
(``export.graph.unroll``): the LSTM's fused kernels per gate, the reservoir's input and recurrent
matrices, the standardiser's statistics, each conv stage and the head."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from cllnn_edge.config import ModelConfig
from cllnn_edge.model import HEAD, LSTM, RESERVOIR, STANDARDIZE
from export.errors import ExportError

GATES = ("input", "forget", "cell", "output")  # Keras' LSTM weight order: i, f, c, o


@dataclass(frozen=True)
class TrainedWeights:
    """The trained weights, split the way the static graph uses them."""

    standardize: list[np.ndarray]
    convs: list[tuple[np.ndarray, np.ndarray]]
    w_in: np.ndarray  # (D, R)
    w_res: np.ndarray  # (R, R)
    lstm_kernel: dict[str, np.ndarray]  # gate -> (R, U)
    lstm_recurrent: dict[str, np.ndarray]  # gate -> (U, U)
    lstm_bias: dict[str, np.ndarray]  # gate -> (U,)
    head: list[np.ndarray]

    @classmethod
    def read(cls, trained: keras.Model, cfg: ModelConfig) -> TrainedWeights:
        lstm = trained.get_layer(LSTM)
        cell = lstm.cell
        if (
            cell.activation is not keras.activations.tanh
            or cell.recurrent_activation is not keras.activations.sigmoid
            or not cell.use_bias
        ):
            raise ExportError(
                "the LSTM must use tanh / sigmoid activations and a bias (the seed's LSTM); "
                f"got {cell.activation.__name__} / {cell.recurrent_activation.__name__}, "
                f"use_bias={cell.use_bias}"
            )
        kernel, recurrent, bias = (w.numpy() for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
        units = cfg.lstm_units

        def per_gate(matrix: np.ndarray) -> dict[str, np.ndarray]:
            return {g: matrix[..., k * units : (k + 1) * units] for k, g in enumerate(GATES)}

        liquid = trained.get_layer(RESERVOIR).cell
        return cls(
            standardize=trained.get_layer(STANDARDIZE).get_weights(),
            convs=[
                tuple(trained.get_layer(f"conv{i}").get_weights())
                for i in range(1, len(cfg.conv_filters) + 1)
            ],
            w_in=liquid.input_kernel.numpy(),
            w_res=liquid.recurrent_kernel.numpy(),
            lstm_kernel=per_gate(kernel),
            lstm_recurrent=per_gate(recurrent),
            lstm_bias=per_gate(bias),
            head=trained.get_layer(HEAD).get_weights(),
        )
