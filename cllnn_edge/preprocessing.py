"""Frozen preprocessing: the seed's column-wise standardisation, inside the model.

The seed reshapes images to ``(-1, 28)`` rows and fits a ``StandardScaler``: one
mean and one standard deviation per pixel *column* (x position), shared by all
rows. It refits on every split, which a device cannot reproduce. Here the
statistics are fitted once, on the training split, and frozen into the first
layer of the model, so the model (and every export of it) takes raw pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cllnn_edge.config import IMAGE_SIDE
from cllnn_edge.errors import DataError

STATS_KIND = "column_standardize"


@dataclass(frozen=True)
class StandardizerStats:
    """Per-column mean and scale, fitted on ``samples`` training images."""

    mean: np.ndarray  # float64, (28,)
    scale: np.ndarray  # float64, (28,), zero deviations replaced by 1 as sklearn does
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": STATS_KIND,
            "fitted_on": "train",
            "samples": self.samples,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandardizerStats:
        if data.get("kind") != STATS_KIND:
            raise DataError(f"preprocessing kind must be {STATS_KIND!r}, got {data.get('kind')!r}")
        mean = np.asarray(data["mean"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        if mean.shape != (IMAGE_SIDE,) or scale.shape != (IMAGE_SIDE,):
            raise DataError(
                f"preprocessing mean and scale must have {IMAGE_SIDE} values each, "
                f"got {mean.shape} and {scale.shape}"
            )
        return cls(mean=mean, scale=scale, samples=int(data["samples"]))

    @classmethod
    def load(cls, path: str | Path) -> StandardizerStats:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read preprocessing statistics {path}: {exc}") from exc


def fit_standardizer(images: np.ndarray) -> StandardizerStats:
    """Fit column statistics on training images (N, 28, 28), in float64 like sklearn."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or len(images) == 0:
        raise DataError(f"expected training images of shape (N, 28, 28), N > 0, got {images.shape}")
    rows = images.reshape(-1, IMAGE_SIDE).astype(np.float64)
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    scale = np.where(std == 0.0, 1.0, std)
    return StandardizerStats(mean=mean, scale=scale, samples=len(images))


def standardize_numpy(images: np.ndarray, stats: StandardizerStats) -> np.ndarray:
    """Reference numpy version of what the ``Standardize`` layer computes."""
    return (np.asarray(images, dtype=np.float64) - stats.mean) / stats.scale


@keras.saving.register_keras_serializable(package="cllnn_edge")
class Standardize(keras.layers.Layer):
    """``(pixels - mean[col]) / scale[col]`` on images (N, 28, 28, 1) of raw pixels.

    ``mean`` and ``scale`` are non-trainable weights, so they are saved in the
    model's weights file and never appear in its JSON config.
    """

    def __init__(self, width: int = IMAGE_SIDE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width = width

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 4 or input_shape[2] != self.width:
            raise ValueError(
                f"Standardize expects (N, H, {self.width}, C) inputs, got {input_shape}"
            )
        self.mean = self.add_weight(
            shape=(self.width,), initializer="zeros", trainable=False, name="mean"
        )
        self.scale = self.add_weight(
            shape=(self.width,), initializer="ones", trainable=False, name="scale"
        )

    def set_stats(self, stats: StandardizerStats) -> None:
        self.mean.assign(stats.mean.astype(np.float32))
        self.scale.assign(stats.scale.astype(np.float32))

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, "float32")
        mean = keras.ops.reshape(self.mean, (1, 1, self.width, 1))
        scale = keras.ops.reshape(self.scale, (1, 1, self.width, 1))
        return (x - mean) / scale

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "width": self.width}
