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
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from cllnn_edge.config import Config, check_fits_in_memory
from cllnn_edge.data import Split, Splits, config_for_data
from cllnn_edge.distribute import ONE_DEVICE, Plan, adopt_shared_backup, per_replica_batch, plan, resume_epoch
from cllnn_edge.model import build_model, model_input, trainable_params
from cllnn_edge.preprocessing import StandardizerStats, fit_standardizer
from cllnn_edge.shards import ShardedData
from cllnn_edge.tf_distribute import dataset, fit_pipelines, make_strategy, sharded_by_data
from cllnn_edge.train_files import HISTORY_FILE, MODEL_FILE, PREPROCESSING_FILE
from cllnn_edge.versions import library_versions
from runtime.atomic import atomic_path, json_text

if TYPE_CHECKING:
    import tensorflow as tf


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


class EpochLog(keras.callbacks.Callback):
    """Every epoch's logs, kept beside the backup too, so a resumed run's history holds the epochs
    trained before the interruption as well (``fit``'s own history starts at the resumed epoch)."""

    def __init__(self, backup_dir: Path, resumed: int) -> None:
        super().__init__()
        self.path, self.resumed = backup_dir / "epochs.json", resumed
        self.history: dict[str, list[float]] = {}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.resumed:  # the epochs the weights being restored had completed, no more
            with contextlib.suppress(OSError, ValueError):
                self.history = {k: v[:self.resumed] for k, v in json.loads(self.path.read_text()).items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.history))


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
    strategy: str | Plan = ONE_DEVICE,
) -> TrainResult:
    """Train a CLLNN on ``splits`` (in memory, or a shard directory streamed through ``tf.data``)
    and write model, statistics and history to ``out_dir``.

    With ``progress``, each epoch reports one line through it (and a live step
    counter on a terminal) instead of Keras' own output. ``strategy`` is a
    ``cllnn_edge.distribute`` name, or the ``Plan`` a caller already resolved
    (``distribute.plan``) so ``TF_CONFIG`` is read once; only the chief writes into
    ``out_dir``. Each epoch is backed up in ``out_dir/backup`` (deleted on success),
    so a re-run after a failure resumes from the last completed epoch.
    """
    out_dir = Path(out_dir)
    how = strategy if isinstance(strategy, Plan) else plan(strategy)
    cfg = _config_for(cfg, splits, progress)
    check_fits_in_memory(cfg.model)
    distributed = make_strategy(how) if how.distributed else None  # before any other TensorFlow work
    keras.utils.set_random_seed(cfg.model.seed)
    if isinstance(splits, Splits):
        stats = fit_standardizer(splits.train.x)
    else:  # a shard directory, streamed through tf.data: the statistics from one pass over its records
        stats = splits.standardizer_stats()
    with distributed.scope() if distributed else contextlib.nullcontext():
        model = build_model(cfg.model, stats)
        compile_model(model, cfg)
    backup, resumed = _resume(cfg, splits, how, out_dir, progress)
    watch = _Watch.of(cfg, backup, resumed, progress)
    verbose = _verbosity(verbose, progress)
    if distributed is None and isinstance(splits, Splits):  # the path every recorded figure came from
        fitted = _fit_arrays(model, splits, cfg, watch.callbacks, verbose)
    else:  # tf.data: a shard directory's pipelines, or in-memory arrays batched by the global batch
        fitted = fit_pipelines(
            model, distributed, how, _pipelines(splits, cfg), batch=cfg.train.batch_size, epochs=cfg.train.epochs,
            callbacks=watch.callbacks, verbose=verbose, resumed=resumed,
        )
    history = _history(cfg, splits, model, watch, fitted)
    if distributed is not None:
        history["distribution"] = _distribution(cfg, how, distributed)
    if how.is_chief:
        save_training(out_dir, model, stats, history)
    else:
        shutil.rmtree(backup, ignore_errors=True)  # the worker's own temp backup; nothing in out_dir
    return TrainResult(model=model, stats=stats, history=history, out_dir=out_dir)


def _config_for(cfg: Config, splits: Splits | ShardedData, progress: Callable[[str], None] | None) -> Config:
    """``cfg`` with the conv/pool stages the images' size allows (``config_for_data``), said through
    ``progress`` when that drops some."""
    adapted = config_for_data(cfg, splits)
    if progress is not None and adapted.model.conv_filters != cfg.model.conv_filters:
        progress(f"model: {len(adapted.model.conv_filters)} of the {len(cfg.model.conv_filters)} conv/pool "
                 f"stages fit {splits.image_shape[0]}x{splits.image_shape[1]} images")
    return adapted


def _resume(
    cfg: Config, splits: Splits | ShardedData, how: Plan, out_dir: Path, progress: Callable[[str], None] | None
) -> tuple[Path, int]:
    """This process's backup directory and the epoch it resumes from (0: a fresh start)."""
    backup = how.backup_dir(out_dir)
    adopt_shared_backup(how, out_dir)
    resumed = resume_epoch(backup, {"config": cfg.to_dict(), "data": splits.summary(), "strategy": how.strategy})
    if resumed and progress is not None:
        progress(f"{how.worker_name}: resuming from epoch {resumed} (backup in {backup})")
    return backup, resumed


@dataclass(frozen=True)
class _Watch:
    """The callbacks a run fits with; ``timer`` and ``epoch_log`` hold what the history reports."""

    timer: StepTimer
    epoch_log: EpochLog
    callbacks: list[keras.callbacks.Callback]

    @classmethod
    def of(cls, cfg: Config, backup: Path, resumed: int, progress: Callable[[str], None] | None) -> _Watch:
        timer = StepTimer()
        reduce_lr = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=cfg.train.lr_reduce_factor,
            patience=cfg.train.lr_reduce_patience,
            min_lr=cfg.train.min_learning_rate,
        )
        epoch_log = EpochLog(backup, resumed)  # after reduce_lr (which adds the rate to the logs), before the backup
        callbacks: list[keras.callbacks.Callback] = [timer, reduce_lr, epoch_log,
                                                     keras.callbacks.BackupAndRestore(str(backup))]
        if progress is not None:
            callbacks.append(EpochProgress(cfg.train.epochs, progress, live=sys.stderr.isatty()))
        return cls(timer, epoch_log, callbacks)


def _verbosity(verbose: int | str, progress: Callable[[str], None] | None) -> int | str:
    """Keras' own output: none when ``progress`` reports; "auto" is a bar on a terminal, a line per epoch in a log."""
    if progress is not None:
        return 0
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def _fit_arrays(
    model: keras.Model, splits: Splits, cfg: Config, callbacks: list[keras.callbacks.Callback], verbose: int | str
) -> tuple[float, float, float]:
    """``model.fit`` on in-memory arrays, then the test split; train seconds, test loss and accuracy."""
    started = time.perf_counter()
    model.fit(
        as_model_input(splits.train),
        splits.train.y,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validation_data=(as_model_input(splits.val), splits.val.y),
        callbacks=callbacks,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started
    test_loss, test_accuracy = model.evaluate(as_model_input(splits.test), splits.test.y, batch_size=256, verbose=0)
    return train_seconds, test_loss, test_accuracy


def _history(
    cfg: Config, splits: Splits | ShardedData, model: keras.Model, watch: _Watch, fitted: tuple[float, float, float]
) -> dict[str, Any]:
    """What history.json records of a run: per-epoch logs, final figures, timing, config, data, versions."""
    train_seconds, test_loss, test_accuracy = fitted
    epochs = watch.epoch_log.history
    return {
        "epochs": epochs,
        "final": {
            "val_accuracy": float(epochs["val_accuracy"][-1]),
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
        },
        "timing": {
            "train_seconds": train_seconds,
            "median_step_ms": watch.timer.median_step_ms(),
            "steps_per_epoch": len(watch.timer.epoch_steps[0]) if watch.timer.epoch_steps else 0,
        },
        "trainable_params": trainable_params(model),
        "config": cfg.to_dict(),
        "data": splits.summary(),
        "versions": library_versions(),
    }


def _distribution(cfg: Config, how: Plan, distributed: tf.distribute.Strategy) -> dict[str, Any]:
    """How a distributed run split its batches, for history.json."""
    replicas = distributed.num_replicas_in_sync
    return {
        "strategy": how.strategy,
        "replicas": replicas,
        "global_batch": cfg.train.batch_size,
        "per_replica_batch": per_replica_batch(cfg.train.batch_size, replicas),
        "learning_rate": cfg.train.learning_rate,  # for the global batch: not scaled by replicas
    }


def _pipelines(splits: Splits | ShardedData, cfg: Config) -> tuple[tf.data.Dataset, ...]:
    """Train (shuffled with the model seed), validation and test as ``tf.data`` pipelines of global
    batches, sharded by DATA under a strategy: a shard directory's own, or over in-memory arrays."""
    batch, seed = cfg.train.batch_size, cfg.model.seed
    if isinstance(splits, ShardedData):
        return tuple(sharded_by_data(pipeline) for pipeline in (
            splits.train_dataset(batch, seed=seed), splits.val_dataset(256), splits.test_dataset(256)))
    return (dataset(as_model_input(splits.train), splits.train.y, batch, seed=seed),
            dataset(as_model_input(splits.val), splits.val.y, batch, seed=None),
            dataset(as_model_input(splits.test), splits.test.y, 256, seed=None))


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
