"""Training speed per step: the seed's code as written vs cllnn_edge's model.

Both models are built at the seed's hyperparameters, compiled with Keras'
defaults (the seed's ``compile`` call) and trained on the same batches of 64.
They run in alternating rounds in one process, so machine noise hits both;
the figure to quote is the ratio of their median step times.

    python benchmarks/train_step.py [--rounds 5] [--steps 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cllnn_edge.config import Config  # noqa: E402
from cllnn_edge.data import load_splits  # noqa: E402
from cllnn_edge.model import build_model  # noqa: E402
from cllnn_edge.preprocessing import fit_standardizer, standardize_numpy  # noqa: E402
from cllnn_edge.train import StepTimer  # noqa: E402

BATCH = 64


# --- The seed's model, as written in shared/seed/CLLNN.md (only reformatted). ---
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


# --- The benchmark. ---
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="training steps per round")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    cfg = Config()
    splits = load_splits("embedded")
    stats = fit_standardizer(splits.train.x)
    count = BATCH * args.steps
    raw = splits.train.x[:count].astype(np.float32)[..., None]
    labels = splits.train.y[:count]
    standardized = standardize_numpy(splits.train.x[:count], stats).astype(np.float32)[..., None]

    np.random.seed(cfg.model.seed)
    keras.utils.set_random_seed(cfg.model.seed)
    seed_model = create_cllnn_model((28, 28, 1), 512, 0.9, 0.2, 128, 10)
    seed_model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    ours = build_model(cfg.model, stats)
    ours.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    contenders = {
        "seed": (seed_model, standardized, keras.utils.to_categorical(labels, 10)),
        "cllnn_edge": (ours, raw, labels),
    }
    steps: dict[str, list[float]] = {name: [] for name in contenders}
    for name, (model, x, y) in contenders.items():  # warm-up: tracing and compilation
        model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
    for round_index in range(args.rounds):
        for name, (model, x, y) in contenders.items():
            timer = StepTimer()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer])
            steps[name].extend(timer.epoch_steps[0])
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    median_ms = {name: statistics.median(values) * 1e3 for name, values in steps.items()}
    ratio = median_ms["seed"] / median_ms["cllnn_edge"]
    for name, value in median_ms.items():
        print(f"{name:>11}: median {value:6.1f} ms/step over {len(steps[name])} steps")
    print(f"speed-up of cllnn_edge over the seed: {ratio:.2f}x")
    if args.json:
        result = {
            "median_step_ms": median_ms,
            "speedup": ratio,
            "settings": {"rounds": args.rounds, "steps": args.steps, "batch": BATCH},
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
