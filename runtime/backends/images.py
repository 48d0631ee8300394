"""What ``predict`` accepts, and how values cross into and out of a model.

Validation happens once, here, at the public entry: backends receive a batch in
the model's own dtype and hand back the raw output tensor. Quantization uses
the file's own scale and zero point, ``real = scale * (q - zero_point)``.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InputError
from runtime.artifacts.manifest import TensorSpec

PIXEL_MIN = 0.0
PIXEL_MAX = 255.0


def _expected_shapes(height: int, width: int, channels: int) -> str:
    if channels == 1:
        return f"({height}, {width}), (N, {height}, {width}) or (N, {height}, {width}, 1)"
    return f"({height}, {width}, {channels}) or (N, {height}, {width}, {channels})"


def as_image_batch(images: object, height: int, width: int, channels: int = 1) -> np.ndarray:
    """Check camera images and return them as an (N, H, W, C) array.

    Grey images (C = 1) come as (H, W), (N, H, W) or (N, H, W, 1); colour ones
    (C = 3) as (H, W, 3) or (N, H, W, 3), channels last.

    uint8 is what a camera gives; float arrays of raw pixel values 0..255 are
    accepted too (e.g. after resizing). The dtype is kept: conversion to the
    model's dtype happens in ``encode`` so uint8 into a uint8 model is a no-op.
    """
    if isinstance(images, (str, bytes)):
        raise InputError(f"expected a uint8 or float image array, got {type(images).__name__}")
    try:
        array = np.asarray(images)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"expected a uint8 or float image array, got {type(images).__name__}: {exc}"
        ) from exc
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise InputError(
            f"expected dtype uint8 (or a float dtype holding raw pixel values 0..255), got {array.dtype}"
        )
    shape = array.shape
    if channels == 1 and array.ndim == 2 and shape == (height, width):
        array = array[np.newaxis, :, :, np.newaxis]
    elif channels == 1 and array.ndim == 3 and shape[1:] == (height, width):
        array = array[:, :, :, np.newaxis]
    elif channels > 1 and array.ndim == 3 and shape == (height, width, channels):
        array = array[np.newaxis]
    elif array.ndim == 4 and shape[1:] == (height, width, channels):
        pass
    else:
        hint = ""
        if channels == 1 and shape == (height, width, 1):
            hint = "; for a single image in HWC layout add a batch axis: images[np.newaxis]"
        elif channels > 1 and shape[-1:] != (channels,) and channels in shape[-3:-2]:
            hint = "; images must be channels-last (N, H, W, C), not (N, C, H, W)"
        raise InputError(f"expected images shaped {_expected_shapes(height, width, channels)}, got {shape}{hint}")
    if array.shape[0] == 0:
        raise InputError(f"expected at least one image, got an empty batch of shape {shape}")
    if array.dtype != np.uint8:
        _check_float_pixels(array)
    return array


def _check_float_pixels(array: np.ndarray) -> None:
    """Float input must be finite raw pixel values: the model standardises internally."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite]
        n_nan = int(np.isnan(bad).sum())
        raise InputError(
            f"expected finite pixel values 0..255, got {n_nan} NaN and {bad.size - n_nan} inf "
            f"of {array.size} values"
        )
    low, high = float(array.min()), float(array.max())
    if low < PIXEL_MIN or high > PIXEL_MAX:
        raise InputError(
            f"expected raw pixel values in [0, 255] (not standardised or scaled to [0, 1]), "
            f"got values in [{low:g}, {high:g}]"
        )


def encode(batch: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Convert a checked batch to the model input's dtype, quantizing if needed."""
    dtype = np.dtype(spec.dtype)
    if np.issubdtype(dtype, np.floating):
        return np.ascontiguousarray(batch, dtype=dtype)
    scale = 1.0 if spec.scale is None else spec.scale
    zero_point = 0 if spec.zero_point is None else spec.zero_point
    if batch.dtype == dtype and scale == 1.0 and zero_point == 0:
        return np.ascontiguousarray(batch)
    info = np.iinfo(dtype)
    quantized = np.rint(batch.astype(np.float32) / np.float32(scale)) + zero_point
    saturated: np.ndarray = np.clip(quantized, info.min, info.max)
    return saturated.astype(dtype)


def decode(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Turn a raw output tensor into float32 probabilities.

    Integer outputs are dequantized and then renormalised to sum to 1: an int8
    softmax rounds each class to a multiple of its scale (1/256), so ten
    rounded values can miss 1 by up to 10 half-steps (~0.02).
    """
    if np.issubdtype(raw.dtype, np.floating):
        return np.asarray(raw, dtype=np.float32)
    real = dequantize(raw, spec)
    totals = real.sum(axis=-1, keepdims=True)
    normalised: np.ndarray = np.divide(real, totals, out=real.copy(), where=totals > 0)
    return normalised.astype(np.float32)


def dequantize(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Any raw output tensor as float32, ``real = scale * (q - zero_point)``; no renormalising."""
    if np.issubdtype(raw.dtype, np.floating):
        return np.asarray(raw, dtype=np.float32)
    scale = 1.0 if spec.scale is None else spec.scale
    zero_point = 0 if spec.zero_point is None else spec.zero_point
    real: np.ndarray = (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return real
