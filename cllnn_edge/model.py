"""The CLLNN as a Keras model: the seed's architecture behind a frozen standardiser.

raw pixels (N, H, W, C) (MNIST: 28, 28, 1) -> Standardize -> [Conv2D 3x3 relu -> MaxPool 2x2] x 3
-> Flatten -> Reshape (T, features / T) -> RNN(LiquidCell) -> LSTM -> Dense softmax

With the defaults the trainable parameter count equals the seed's (422,154);
the standardiser and the reservoir hold only non-trainable weights.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np

from cllnn_edge.config import ModelConfig
from cllnn_edge.errors import ModelError
from cllnn_edge.preprocessing import Standardize, StandardizerStats
from cllnn_edge.reservoir import LiquidCell

SEED_TRAINABLE_PARAMS = 422_154

# Layer names other parts of the toolkit rely on (the unroller, stage-by-stage parity).
INPUT_NAME = "pixels"
STANDARDIZE = "standardize"
RESERVOIR = "reservoir"
LSTM = "lstm"
HEAD = "head"


def model_input(images: np.ndarray) -> np.ndarray:
    """Camera images (N, H, W) grey or (N, H, W, C) as the model's input: float32 (N, H, W, C) raw pixels."""
    pixels = np.asarray(images, dtype=np.float32)
    return pixels[..., np.newaxis] if pixels.ndim == 3 else pixels


def build_model(
    cfg: ModelConfig, stats: StandardizerStats | None = None, *, unroll: bool = True
) -> keras.Model:
    """Build the CLLNN; ``stats`` (if given) are frozen into the first layer.

    ``unroll=True`` has Keras unroll the T recurrent steps at trace time: the
    same maths as the seed's symbolic loop, faster to train for small T.
    """
    height, width, channels = cfg.image_shape
    inputs = keras.Input((height, width, channels), name=INPUT_NAME)
    standardize = Standardize(width, channels, name=STANDARDIZE)
    x = standardize(inputs)
    for index, filters in enumerate(cfg.conv_filters, start=1):
        x = keras.layers.Conv2D(
            filters, (3, 3), activation="relu", padding="same", name=f"conv{index}"
        )(x)
        x = keras.layers.MaxPooling2D((2, 2), name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Reshape((cfg.sequence_length, cfg.step_features), name="to_sequence")(x)
    cell = LiquidCell(
        cfg.reservoir_dim, cfg.leak_rate, cfg.spectral_radius, cfg.seed, name="liquid_cell"
    )
    x = keras.layers.RNN(cell, return_sequences=True, unroll=unroll, name=RESERVOIR)(x)
    x = keras.layers.LSTM(cfg.lstm_units, unroll=unroll, name=LSTM)(x)
    outputs = keras.layers.Dense(cfg.output_dim, activation="softmax", name=HEAD)(x)
    model = keras.Model(inputs, outputs, name="cllnn")
    if stats is not None:
        standardize.set_stats(stats)
    return model


def trainable_params(model: keras.Model) -> int:
    """Number of trainable scalars (the figure Keras' summary prints)."""
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def config_from_model(model: keras.Model) -> ModelConfig:
    """Recover the ModelConfig a CLLNN was built with, from its layers.

    Raises ModelError naming the first missing or unexpected piece, so a
    Keras model of another architecture is refused before any export work.
    """
    try:
        cell = model.get_layer(RESERVOIR).cell
        lstm = model.get_layer(LSTM)
        head = model.get_layer(HEAD)
        model.get_layer(STANDARDIZE)
        reshape = model.get_layer("to_sequence")
    except ValueError as exc:
        raise ModelError(f"not a CLLNN model (model {model.name!r}): {exc}") from exc
    if not isinstance(cell, LiquidCell):
        raise ModelError(f"layer {RESERVOIR!r} holds a {type(cell).__name__}, not a LiquidCell")
    filters = []
    while True:
        try:
            filters.append(model.get_layer(f"conv{len(filters) + 1}").filters)
        except ValueError:
            break
    return ModelConfig(
        reservoir_dim=cell.units,
        spectral_radius=cell.spectral_radius,
        leak_rate=cell.leak_rate,
        lstm_units=lstm.units,
        conv_filters=tuple(filters),
        output_dim=head.units,
        sequence_length=reshape.target_shape[0],
        seed=cell.seed,
        image_shape=tuple(int(side) for side in model.input_shape[1:]),
    )


def load_trained(path: str | Path) -> keras.Model:
    """Load a ``model.keras`` written by ``cllnn_edge.train``; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a Keras model file (.keras is a zip archive)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot load {path} as a Keras model: {exc}") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    config_from_model(model)  # refuses anything that is not a CLLNN
    return model
