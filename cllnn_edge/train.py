"""Training: fit the frozen standardiser, train the CLLNN, save everything atomically.

Output directory layout::

    model.keras          the trained model (standardiser statistics inside)
    preprocessing.json   the same statistics, readable without Keras
    history.json         per-epoch metrics, learning rate, timing, test accuracy,
                         the config, data summary and library versions

All three are staged as temporaries and renamed into place only after every
one of them is written, so an interrupted run leaves the previous results (or
nothing) under the final names, never a half-written file.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cllnn_edge.config import Config, check_fits_in_memory
from cllnn_edge.data import Split, Splits, config_for_data
from cllnn_edge.model import build_model, model_input, trainable_params
from cllnn_edge.preprocessing import StandardizerStats, fit_standardizer
from cllnn_edge.shards import ShardedData
from cllnn_edge.train_files import HISTORY_FILE, MODEL_FILE, PREPROCESSING_FILE
from cllnn_edge.versions import library_versions
from runtime.atomic import atomic_path, json_text


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` produced: the model in memory and where its files are."""

    model: keras.Model
    stats: StandardizerStats
    history: dict[str, Any]
    out_dir: Path

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of every training step (the first epoch includes tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_steps: list[list[float]] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_steps.append([])

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_steps[-1].append(time.perf_counter() - self._start)

    def median_step_ms(self) -> float | None:
        """Median step time after the first epoch (or of it, if it is the only one)."""
        steps = [s for epoch in self.epoch_steps[1:] for s in epoch] or (
            self.epoch_steps[0] if self.epoch_steps else []
        )
        return float(np.median(steps) * 1e3) if steps else None


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch through ``progress``; on a terminal, a live step counter on stderr."""

    def __init__(self, epochs: int, progress: Callable[[str], None], *, live: bool) -> None:
        super().__init__()
        self.epochs, self.progress, self.live = epochs, progress, live
        self._started = 0.0
        self._steps = 0
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._steps = self.params.get("steps") or 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.live:
            print(f"\repoch {self._epoch + 1}/{self.epochs}: step {batch + 1}/{self._steps}",
                  end="", file=sys.stderr, flush=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        rate = float(logs.get("learning_rate",
                              keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.progress(
            f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f}  "
            f"accuracy {logs.get('accuracy', float('nan')):.4f}  "
            f"val_accuracy {logs.get('val_accuracy', float('nan')):.4f}  lr {rate:.0e}  "
            f"{time.perf_counter() - self._started:.1f} s"
        )


def as_model_input(split: Split) -> np.ndarray:
    """Raw pixels as the model takes them: float32 (N, H, W, C), values 0..255."""
    return model_input(split.x)


def compile_model(model: keras.Model, cfg: Config) -> None:
    """Adam at the configured rate; integer labels, so sparse cross-entropy (the
    same loss as the seed's one-hot categorical cross-entropy)."""
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(
    cfg: Config,
    splits: Splits | ShardedData,
    out_dir: str | Path,
    *,
    verbose: int | str = "auto",
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a CLLNN on ``splits`` (in memory, or a shard directory streamed through ``tf.data``)
    and write model, statistics and history to ``out_dir``.

    With ``progress``, each epoch reports one line through it (and a live step
    counter on a terminal) instead of Keras' own output.
    """
    out_dir = Path(out_dir)
    adapted = config_for_data(cfg, splits)
    if progress is not None and adapted.model.conv_filters != cfg.model.conv_filters:
        progress(f"model: {len(adapted.model.conv_filters)} of the {len(cfg.model.conv_filters)} conv/pool "
                 f"stages fit {splits.image_shape[0]}x{splits.image_shape[1]} images")
    cfg = adapted
    check_fits_in_memory(cfg.model)
    keras.utils.set_random_seed(cfg.model.seed)
    if isinstance(splits, Splits):
        stats = fit_standardizer(splits.train.x)
        fit_data: dict[str, Any] = {
            "x": as_model_input(splits.train), "y": splits.train.y, "batch_size": cfg.train.batch_size,
            "validation_data": (as_model_input(splits.val), splits.val.y)}
        test_data: dict[str, Any] = {"x": as_model_input(splits.test), "y": splits.test.y, "batch_size": 256}
    else:  # a shard directory, streamed through tf.data: the statistics from one pass over its records
        stats = splits.standardizer_stats()
        fit_data = {"x": splits.train_dataset(cfg.train.batch_size, seed=cfg.model.seed),
                    "validation_data": splits.val_dataset(256), "shuffle": False}  # the pipeline shuffles
        test_data = {"x": splits.test_dataset(256)}
    model = build_model(cfg.model, stats)
    compile_model(model, cfg)
    timer = StepTimer()
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss",
        factor=cfg.train.lr_reduce_factor,
        patience=cfg.train.lr_reduce_patience,
        min_lr=cfg.train.min_learning_rate,
    )
    callbacks: list[keras.callbacks.Callback] = [timer, reduce_lr]
    if progress is not None:
        callbacks.append(EpochProgress(cfg.train.epochs, progress, live=sys.stderr.isatty()))
        verbose = 0
    elif verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    started = time.perf_counter()
    fit = model.fit(**fit_data, epochs=cfg.train.epochs, callbacks=callbacks, verbose=verbose)
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy = model.evaluate(**test_data, verbose=0)
    history = {
        "epochs": {key: [float(v) for v in values] for key, values in fit.history.items()},
        "final": {
            "val_accuracy": float(fit.history["val_accuracy"][-1]),
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
        },
        "timing": {
            "train_seconds": train_seconds,
            "median_step_ms": timer.median_step_ms(),
            "steps_per_epoch": len(timer.epoch_steps[0]) if timer.epoch_steps else 0,
        },
        "trainable_params": trainable_params(model),
        "config": cfg.to_dict(),
        "data": splits.summary(),
        "versions": library_versions(),
    }
    save_training(out_dir, model, stats, history)
    return TrainResult(model=model, stats=stats, history=history, out_dir=out_dir)


def save_training(
    out_dir: Path, model: keras.Model, stats: StandardizerStats, history: dict[str, Any]
) -> None:
    """Stage all three files, then rename them into place together."""
    with contextlib.ExitStack() as stack:
        model_tmp = stack.enter_context(atomic_path(out_dir / MODEL_FILE))
        stats_tmp = stack.enter_context(atomic_path(out_dir / PREPROCESSING_FILE))
        history_tmp = stack.enter_context(atomic_path(out_dir / HISTORY_FILE))
        model.save(model_tmp)
        stats_tmp.write_text(json_text(stats.to_dict()))
        history_tmp.write_text(json_text(history))
