"""Frozen standardisation: the seed's statistics, fitted once, applied inside the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from cllnn_edge.errors import DataError
from cllnn_edge.preprocessing import (
    ColumnMoments,
    Standardize,
    StandardizerStats,
    fit_standardizer,
    standardize_numpy,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    x[:, :, 0] = 0  # a constant column, as MNIST's edges are
    return x


def test_statistics_match_the_seeds_standard_scaler(images: np.ndarray) -> None:
    stats = fit_standardizer(images)
    scaler = StandardScaler().fit(images.reshape(-1, 28).astype(np.float64))
    np.testing.assert_allclose(stats.mean, scaler.mean_)
    np.testing.assert_allclose(stats.scale, scaler.scale_)
    assert stats.scale[0] == 1.0  # zero variance -> 1, as sklearn does
    expected = scaler.transform(images.reshape(-1, 28)).reshape(images.shape)
    np.testing.assert_allclose(standardize_numpy(images, stats), expected)


def test_layer_applies_the_frozen_statistics(images: np.ndarray) -> None:
    stats = fit_standardizer(images)
    layer = Standardize()
    layer.build((None, 28, 28, 1))
    layer.set_stats(stats)
    out = keras.ops.convert_to_numpy(layer(images[..., None].astype(np.float32)))
    np.testing.assert_allclose(out[..., 0], standardize_numpy(images, stats), rtol=1e-5, atol=1e-4)
    assert layer.trainable_weights == []


def test_statistics_round_trip_through_a_dict(images: np.ndarray) -> None:
    stats = fit_standardizer(images)
    again = StandardizerStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.scale, stats.scale)
    assert again.samples == 50


def test_bad_inputs_are_named() -> None:
    with pytest.raises(DataError, match=r"expected images \(N, H, W\) or \(N, H, W, C\), N > 0, got \(5, 784\)"):
        fit_standardizer(np.zeros((5, 784), np.uint8))
    with pytest.raises(DataError, match="N > 0"):
        fit_standardizer(np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(DataError, match="must have width x 1 channel"):
        StandardizerStats.from_dict(
            {"kind": "column_standardize", "mean": [0.0], "scale": [1.0, 2.0], "samples": 1}
        )
    with pytest.raises(DataError, match="must have width x 3 channel"):
        StandardizerStats.from_dict(
            {"kind": "column_standardize", "channels": 3, "mean": [0.0] * 4, "scale": [1.0] * 4, "samples": 1}
        )
    with pytest.raises(DataError, match="preprocessing kind"):
        StandardizerStats.from_dict({"kind": "minmax"})


def test_moments_summed_over_batches_equal_the_whole_set_and_rgb_has_one_column_per_channel() -> None:
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (301, 6, 5, 3), dtype=np.uint8)
    images[:, :, 0, 1] = 200  # a constant column and channel: scale 1, as sklearn does
    whole = fit_standardizer(images)
    moments = ColumnMoments()
    for start in range(0, len(images), 37):
        moments.add(images[start : start + 37])
    streamed = moments.stats()
    assert (streamed.samples, streamed.channels, streamed.width, streamed.mean.shape) == (301, 3, 5, (15,))
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.scale, whole.scale, rtol=1e-12)
    columns = images.astype(np.float64).reshape(-1, 5, 3)
    np.testing.assert_allclose(whole.mean.reshape(5, 3), columns.mean(axis=0), rtol=1e-12)
    assert whole.scale.reshape(5, 3)[0, 1] == 1.0
    layer = Standardize(5, 3)
    layer.build((None, 6, 5, 3))
    layer.set_stats(whole)
    np.testing.assert_allclose(np.asarray(layer(images.astype(np.float32))), standardize_numpy(images, whole),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="another width or channel count"):
        moments.add(images[:, :, :4])
