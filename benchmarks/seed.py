"""The seed's code (``shared/seed/CLLNN.md``), as written: the reference every benchmark
compares against. Only reformatted; the RNN-over-cell reservoir, the per-split
StandardScaler and the one-hot labels are the seed's own.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.preprocessing import StandardScaler


class LNNStep(tf.keras.layers.Layer):
    def __init__(self, reservoir_weights, input_weights, leak_rate, **kwargs):
        super().__init__(**kwargs)
        self.reservoir_weights = tf.constant(reservoir_weights, dtype=tf.float32)
        self.input_weights = tf.constant(input_weights, dtype=tf.float32)
        self.leak_rate = leak_rate
        self.reservoir_dim = reservoir_weights.shape[0]

    @property
    def state_size(self):
        return (self.reservoir_dim,)

    def call(self, inputs, states):
        prev_state = states[0]
        input_part = tf.matmul(inputs, self.input_weights, transpose_b=True)
        reservoir_part = tf.matmul(prev_state, self.reservoir_weights, transpose_b=True)
        state = (1 - self.leak_rate) * prev_state + self.leak_rate * tf.tanh(
            input_part + reservoir_part
        )
        return state, [state]


def initialize_lnn_reservoir(input_dim, reservoir_dim, spectral_radius):
    reservoir_weights = np.random.randn(reservoir_dim, reservoir_dim)
    reservoir_weights *= spectral_radius / np.max(np.abs(np.linalg.eigvals(reservoir_weights)))
    input_weights = np.random.randn(reservoir_dim, input_dim) * 0.1
    return reservoir_weights, input_weights


def create_cllnn_model(input_shape, reservoir_dim, spectral_radius, leak_rate, lstm_units, output_dim):
    L = tf.keras.layers
    inputs = L.Input(shape=input_shape)
    x = L.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
    x = L.MaxPooling2D((2, 2))(x)
    x = L.Conv2D(64, (3, 3), activation="relu", padding="same")(x)
    x = L.MaxPooling2D((2, 2))(x)
    x = L.Conv2D(128, (3, 3), activation="relu", padding="same")(x)
    x = L.MaxPooling2D((2, 2))(x)
    x = L.Flatten()(x)
    cnn_output_shape = x.shape[1]
    x = L.Reshape((1, cnn_output_shape))(x)
    reservoir_weights, input_weights = initialize_lnn_reservoir(
        cnn_output_shape, reservoir_dim, spectral_radius
    )
    x = L.RNN(LNNStep(reservoir_weights, input_weights, leak_rate), return_sequences=True)(x)
    x = L.LSTM(lstm_units)(x)
    outputs = L.Dense(output_dim, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs)


def normalize_data(x):
    num_samples, height, width = x.shape
    x = x.reshape(-1, width)
    scaler = StandardScaler()
    x = scaler.fit_transform(x)
    return x.reshape(num_samples, height, width)


def seed_model(seed: int = 0) -> tf.keras.Model:
    """The seed's model at its hyperparameters, compiled as the seed compiles it."""
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    model = create_cllnn_model((28, 28, 1), 512, 0.9, 0.2, 128, 10)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def seed_inputs(x: np.ndarray) -> np.ndarray:
    """Images as the seed feeds them: standardised by the seed's per-split scaler, (N, 28, 28, 1)."""
    return normalize_data(x.astype(np.float64)).astype(np.float32).reshape(-1, 28, 28, 1)
