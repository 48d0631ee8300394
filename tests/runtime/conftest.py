"""Tiny golden models for the runtime tests, built from a seed once per session.

The runtime never imports TensorFlow; its tests may, to build what a device
would receive: a Keras model (Rescaling -> Flatten -> Dense softmax) converted
to float32 and full-int8 TFLite, and to float32 and QDQ-int8 ONNX. The tf2onnx
CLI runs in a subprocess while the TFLite conversions run here.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

SEED = 0
N_IMAGES = 64


@dataclass(frozen=True)
class TinyModels:
    """Paths of the converted files, the test images and Keras's own outputs on them."""

    fp32_tflite: Path
    int8_tflite: Path
    fixed_batch_tflite: Path  # float32, batch fixed at 2: exercises chunking
    fp32_onnx: Path
    int8_onnx: Path
    images: np.ndarray  # uint8 (N_IMAGES, 28, 28)
    reference: np.ndarray  # float32 (N_IMAGES, 10), keras model on ``images``

    def all(self) -> dict[str, Path]:
        return {
            "fp32_tflite": self.fp32_tflite,
            "int8_tflite": self.int8_tflite,
            "fixed_batch_tflite": self.fixed_batch_tflite,
            "fp32_onnx": self.fp32_onnx,
            "int8_onnx": self.int8_onnx,
        }


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blobby digit-like uint8 images: a bright random stroke on dark background."""
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((n, 28, 28), dtype=np.float32)
    for i in range(n):
        for _ in range(4):
            cy, cx = rng.uniform(6, 22, size=2)
            images[i] += 255.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 16))
    return np.clip(images + rng.uniform(0, 20, size=images.shape), 0, 255).astype(np.uint8)


def _keras_model(keras: ModuleType, batch_size: int | None = None) -> Any:
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((28, 28, 1), batch_size=batch_size, name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    dense = keras.layers.Dense(10, activation="softmax")
    model = keras.Model(inputs, dense(x))
    rng = np.random.default_rng(SEED)
    # Larger weights than Glorot so class decisions are clear and int8 top-1 is meaningful.
    dense.set_weights([rng.normal(0.0, 0.15, (784, 10)).astype(np.float32), np.zeros(10, np.float32)])
    return model


def _int8_tflite(tf: ModuleType, model: Any, rng: np.random.Generator) -> bytes:
    calibration = _images(rng, 32).astype(np.float32)[..., None]

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # uint8 input with no statistics is what we ask for
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


def _int8_onnx(source: Path, target: Path, rng: np.random.Generator) -> None:
    """QDQ int8 with the final Softmax left in float.

    A quantized Softmax output (scale 1/255, ten values) sums to 1 only within
    ~2e-2; computed in float from int8 logits it sums to 1 exactly.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = [{"pixels": image[None, ..., None].astype(np.float32)} for image in _images(rng, 32)]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    softmax = [node.name for node in onnx.load(str(source)).graph.node if node.op_type == "Softmax"]
    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=softmax,
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    out = tmp_path_factory.mktemp("tiny_models")
    model = _keras_model(keras)
    model.export(str(out / "saved_model"), verbose=False)
    to_onnx = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            str(out / "saved_model"),
            "--output",
            str(out / "fp32.onnx"),
            "--opset",
            "18",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rng = np.random.default_rng(SEED)
        (out / "fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        (out / "int8.tflite").write_bytes(_int8_tflite(tf, model, rng))
        fixed = tf.lite.TFLiteConverter.from_keras_model(_keras_model(keras, batch_size=2))  # same weights
        (out / "fixed2.tflite").write_bytes(fixed.convert())
        images = _images(rng, N_IMAGES)
        reference = np.asarray(model(images[..., None].astype(np.float32), training=False), dtype=np.float32)
        log, _ = to_onnx.communicate(timeout=300)
    finally:
        if to_onnx.poll() is None:
            to_onnx.kill()
            to_onnx.wait()
    assert to_onnx.returncode == 0, f"tf2onnx failed:\n{log[-3000:]}"
    _int8_onnx(out / "fp32.onnx", out / "int8.onnx", rng)
    return TinyModels(
        fp32_tflite=out / "fp32.tflite",
        int8_tflite=out / "int8.tflite",
        fixed_batch_tflite=out / "fixed2.tflite",
        fp32_onnx=out / "fp32.onnx",
        int8_onnx=out / "int8.onnx",
        images=images,
        reference=reference,
    )


@pytest.fixture
def artifacts(tiny: TinyModels, tmp_path: Path) -> Path:
    """A directory as convert leaves it: the tiny files, check_set.npz and manifest.json listing both."""
    from tests.runtime.helpers import write_artifacts

    return write_artifacts(tiny, tmp_path / "artifacts")


@dataclass(frozen=True)
class MultiOutputModels:
    """A three-output model (like a stage probe) converted as ``export`` converts: via a SavedModel."""

    fp32_tflite: Path
    int8_tflite: Path
    fp32_onnx: Path
    images: np.ndarray  # uint8 (N_IMAGES, 28, 28)
    reference: dict[str, np.ndarray]  # Keras's outputs, by name


MULTI_OUTPUT_SHAPES = {"zz_hidden": (7,), "aa_bottleneck": (3,), "mm_probs": (10,)}  # distinct widths


def _multi_output_model(keras: ModuleType) -> Any:
    """pixels -> hidden (7) -> bottleneck (3) -> probabilities (10), as named outputs.

    The names sort against the data flow ("zz", "aa", "mm"), and the converted
    files' own tensor names are generated, so only a name read from the file's
    signature finds each output.
    """
    keras.utils.set_random_seed(SEED + 1)
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255.0)(inputs))
    hidden = keras.layers.Dense(7, activation="relu", name="hidden")(x)
    bottleneck = keras.layers.Dense(3, name="bottleneck")(hidden)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(bottleneck)
    return keras.Model(inputs, {"zz_hidden": hidden, "aa_bottleneck": bottleneck, "mm_probs": probs})


@pytest.fixture(scope="session")
def multi_output(tmp_path_factory: pytest.TempPathFactory) -> MultiOutputModels:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    out = tmp_path_factory.mktemp("multi_output_models")
    model = _multi_output_model(keras)
    model.export(str(out / "saved_model"), verbose=False)
    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(out / "saved_model"),
         "--output", str(out / "fp32.onnx"), "--opset", "18"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"tf2onnx failed:\n{done.stderr[-3000:]}"
    rng = np.random.default_rng(SEED + 1)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"), signature_keys=["serve"])
    (out / "fp32.tflite").write_bytes(converter.convert())
    calibration = _images(rng, 32).astype(np.float32)[..., None]
    converter = tf.lite.TFLiteConverter.from_saved_model(str(out / "saved_model"), signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        (out / "int8.tflite").write_bytes(bytes(converter.convert()))
    images = _images(rng, N_IMAGES)
    outputs = model(images[..., None].astype(np.float32), training=False)
    reference = {name: np.asarray(o, dtype=np.float32) for name, o in outputs.items()}
    return MultiOutputModels(
        fp32_tflite=out / "fp32.tflite",
        int8_tflite=out / "int8.tflite",
        fp32_onnx=out / "fp32.onnx",
        images=images,
        reference=reference,
    )
