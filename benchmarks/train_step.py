"""Training speed per step: the seed's code as written vs cllnn_edge's model.

Both models are built at the seed's hyperparameters, compiled as their code
compiles them (the seed: Keras' defaults; cllnn_edge: ``cllnn_edge.train``'s
settings) and trained on the same batches of 64 embedded MNIST digits. They run
one epoch each in alternating rounds in one process, so machine noise hits
both. Two figures per model: the median of the per-step times Keras' batch
callbacks see, and the epoch's wall time divided by its steps (what Keras'
"ms/step" shows, fit() overhead included). Quote the ratios.

    python benchmarks/train_step.py [--rounds 8] [--steps 57] [--json FILE]
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
from cllnn_edge.train import StepTimer, compile_model  # noqa: E402

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
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--steps", type=int, default=57, help="steps per epoch (57 = one embedded epoch)"
    )
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
    compile_model(ours, cfg)

    contenders = {
        "seed": (seed_model, standardized, keras.utils.to_categorical(labels, 10)),
        "cllnn_edge": (ours, raw, labels),
    }
    steps: dict[str, list[float]] = {name: [] for name in contenders}
    epoch_ms: dict[str, list[float]] = {name: [] for name in contenders}
    for name, (model, x, y) in contenders.items():  # warm-up: tracing and compilation
        model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
    for round_index in range(args.rounds):
        for name, (model, x, y) in contenders.items():
            timer = StepTimer()
            started = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[timer])
            epoch_ms[name].append((time.perf_counter() - started) / args.steps * 1e3)
            steps[name].extend(timer.epoch_steps[0])
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    median_ms = {name: statistics.median(values) * 1e3 for name, values in steps.items()}
    per_epoch_ms = {name: statistics.median(values) for name, values in epoch_ms.items()}
    ratio = median_ms["seed"] / median_ms["cllnn_edge"]
    epoch_ratio = per_epoch_ms["seed"] / per_epoch_ms["cllnn_edge"]
    for name in contenders:
        print(
            f"{name:>11}: median step {median_ms[name]:6.1f} ms, "
            f"epoch wall time {per_epoch_ms[name]:6.1f} ms/step"
        )
    print(f"cllnn_edge vs seed, speed-up: {ratio:.2f}x per step, {epoch_ratio:.2f}x per epoch")
    if args.json:
        result = {
            "median_step_ms": median_ms,
            "epoch_ms_per_step": per_epoch_ms,
            "speedup_step": ratio,
            "speedup_epoch": epoch_ratio,
            "settings": {"rounds": args.rounds, "steps": args.steps, "batch": BATCH},
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
