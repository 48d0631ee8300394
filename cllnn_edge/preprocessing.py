"""Frozen preprocessing: the seed's column-wise standardisation, inside the model.

The seed reshapes images to ``(-1, 28)`` rows and fits a ``StandardScaler``: one
mean and one standard deviation per pixel *column* (x position), shared by all
rows. It refits on every split, which a device cannot reproduce. Here the
statistics are fitted once, on the training split, and frozen into the first
layer of the model, so the model (and every export of it) takes raw pixels.
An RGB image gets one mean and one deviation per column and channel.

The statistics are summed in one pass over batches (``ColumnMoments``: per-batch
mean and squared deviations, merged by Chan et al.'s pairwise rule in float64), so
a data set that does not fit in memory is standardised like one that does; on one
batch the result equals numpy's ``mean`` / ``std`` bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cllnn_edge.config import CHANNELS, IMAGE_SIDE
from cllnn_edge.errors import DataError

STATS_KIND = "column_standardize"


@dataclass(frozen=True)
class StandardizerStats:
    """Per-column (and per-channel) mean and scale, fitted on ``samples`` training images."""

    mean: np.ndarray  # float64, (width * channels,): column-major over (column, channel)
    scale: np.ndarray  # float64, same shape, zero deviations replaced by 1 as sklearn does
    samples: int
    channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": STATS_KIND,
            "fitted_on": "train",
            "samples": self.samples,
            "channels": self.channels,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @property
    def width(self) -> int:
        return len(self.mean) // self.channels

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandardizerStats:
        if data.get("kind") != STATS_KIND:
            raise DataError(f"preprocessing kind must be {STATS_KIND!r}, got {data.get('kind')!r}")
        mean = np.asarray(data["mean"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        channels = data.get("channels", 1)  # files written before RGB images name none
        if channels not in CHANNELS:
            raise DataError(f"preprocessing channels must be one of {CHANNELS}, got {channels!r}")
        if mean.ndim != 1 or mean.shape != scale.shape or not len(mean) or len(mean) % channels:
            raise DataError(
                f"preprocessing mean and scale must have width x {channels} channel(s) values each, "
                f"got {mean.shape} and {scale.shape}"
            )
        return cls(mean=mean, scale=scale, samples=int(data["samples"]), channels=channels)

    @classmethod
    def load(cls, path: str | Path) -> StandardizerStats:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read preprocessing statistics {path}: {exc}") from exc


class ColumnMoments:
    """Running per-column count, mean and sum of squared deviations over batches of images.

    Each batch's moments are computed in float64 and merged by Chan et al.'s pairwise rule,
    which stays accurate where a running sum of squares cancels catastrophically.
    """

    def __init__(self) -> None:
        self.images = 0
        self.rows = 0
        self.channels = 0
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)

    def add(self, images: np.ndarray) -> None:
        """Add uint8 (or raw float) images (N, H, W) or (N, H, W, C); every batch the same W and C."""
        images = np.asarray(images)
        if images.ndim not in (3, 4) or len(images) == 0:
            raise DataError(f"expected images (N, H, W) or (N, H, W, C), N > 0, got {images.shape}")
        channels = images.shape[3] if images.ndim == 4 else 1
        rows = images.reshape(-1, images.shape[2] * channels).astype(np.float64)
        mean = rows.mean(axis=0)
        m2 = ((rows - mean) ** 2).sum(axis=0)
        if self.rows == 0:
            self.mean, self.m2, self.channels = mean, m2, channels
        else:
            if mean.shape != self.mean.shape or channels != self.channels:
                raise DataError(f"images of another width or channel count in one data set: {images.shape[1:]}")
            total = self.rows + len(rows)
            delta = mean - self.mean
            self.mean = self.mean + delta * (len(rows) / total)
            self.m2 = self.m2 + m2 + delta**2 * (self.rows * len(rows) / total)
        self.rows += len(rows)
        self.images += len(images)

    def stats(self) -> StandardizerStats:
        if self.rows == 0:
            raise DataError("expected at least one training image to fit the standardiser, got none")
        std = np.sqrt(self.m2 / self.rows)
        scale = np.where(std == 0.0, 1.0, std)
        return StandardizerStats(mean=self.mean, scale=scale, samples=self.images, channels=self.channels)


def fit_standardizer(images: np.ndarray) -> StandardizerStats:
    """Fit column statistics on training images (N, H, W[, C]) held in memory, in float64 like sklearn."""
    moments = ColumnMoments()
    moments.add(images)
    return moments.stats()


def standardize_numpy(images: np.ndarray, stats: StandardizerStats) -> np.ndarray:
    """Reference numpy version of what the ``Standardize`` layer computes, on (N, H, W[, C]) images."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        return (images - stats.mean.reshape(stats.width, stats.channels)) / stats.scale.reshape(
            stats.width, stats.channels)
    return (images - stats.mean) / stats.scale


@keras.saving.register_keras_serializable(package="cllnn_edge")
class Standardize(keras.layers.Layer):
    """``(pixels - mean[col, ch]) / scale[col, ch]`` on images (N, H, W, C) of raw pixels.

    ``mean`` and ``scale`` are non-trainable weights, so they are saved in the
    model's weights file and never appear in its JSON config.
    """

    def __init__(self, width: int = IMAGE_SIDE, channels: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width = width
        self.channels = channels

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 4 or input_shape[2] != self.width or input_shape[3] != self.channels:
            raise ValueError(
                f"Standardize expects (N, H, {self.width}, {self.channels}) inputs, got {input_shape}"
            )
        self.mean = self.add_weight(
            shape=(self.width * self.channels,), initializer="zeros", trainable=False, name="mean"
        )
        self.scale = self.add_weight(
            shape=(self.width * self.channels,), initializer="ones", trainable=False, name="scale"
        )

    def set_stats(self, stats: StandardizerStats) -> None:
        self.mean.assign(stats.mean.astype(np.float32))
        self.scale.assign(stats.scale.astype(np.float32))

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, "float32")
        mean = keras.ops.reshape(self.mean, (1, 1, self.width, self.channels))
        scale = keras.ops.reshape(self.scale, (1, 1, self.width, self.channels))
        return (x - mean) / scale

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "width": self.width, "channels": self.channels}
