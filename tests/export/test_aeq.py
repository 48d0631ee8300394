"""TFLite files from a recipe (AI Edge Quantizer): raw uint8 pixels in, the stages at their precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from export.errors import ConversionError
from export.formats.file_checks import float_kernels
from export.formats.precision import INT16X8, MINMAX, MOVING_AVERAGE, Recipe


@pytest.fixture(scope="module")
def float_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A small CLLNN's unrolled graph as float32 TFLite, and (calibration, test) images."""
    from cllnn_edge.config import ModelConfig
    from cllnn_edge.data import load_splits
    from cllnn_edge.model import build_model
    from cllnn_edge.preprocessing import fit_standardizer
    from export.formats.isolate import Conversion
    from export.formats.tflite import to_tflite
    from export.graph.unroll import unroll

    splits = load_splits("embedded")
    trained = build_model(ModelConfig(conv_filters=(4, 8, 16), reservoir_dim=48, lstm_units=12),
                          fit_standardizer(splits.train.x[:500]))
    work = tmp_path_factory.mktemp("aeq")
    unroll(trained).model.export(str(work / "saved"), verbose=False)
    to_tflite(work / "saved", work / "float.tflite", Conversion(calibration=None, opset=18, per_channel=True),
              precision="float32")
    return (work / "float.tflite").read_bytes(), splits.train.x[:300], splits.test.x[:200]


def _load(data: bytes, path: Path) -> runtime.RuntimeModel:
    path.write_bytes(data)
    return runtime.load(path, manifest=None)


def test_int16x8_takes_raw_pixels_and_has_no_float_kernel(float_file, tmp_path: Path) -> None:
    from export.formats.aeq import quantize_tflite

    float_model, calibration, images = float_file
    data = quantize_tflite(float_model, Recipe.uniform(INT16X8), calibration, MINMAX)
    with _load(float_model, tmp_path / "float.tflite") as reference, _load(data, tmp_path / "q.tflite") as model:
        assert (model.input_spec.dtype, model.input_spec.scale, model.input_spec.zero_point) == ("uint8", 1.0, 0)
        assert model.output_spec.dtype == "int16"
        expected, got = reference.predict(images), model.predict(images)
    assert float_kernels(tmp_path / "q.tflite") == []
    assert got.dtype == np.float32 and np.abs(got - expected).max() < 1e-2


def test_a_float_cnn_stays_float_and_the_rest_is_integer(float_file, tmp_path: Path) -> None:
    from export.formats.aeq import quantize_tflite

    float_model, calibration, images = float_file
    data = quantize_tflite(float_model, Recipe.parse("cnn=float32"), calibration, MINMAX)
    path = tmp_path / "mixed.tflite"
    with _load(data, path) as model:
        assert model.input_spec.dtype == "uint8" and model.predict(images).shape == (len(images), 10)
    ops = runtime.tflite_op_dtypes(path)
    assert ops[0].op == "DEQUANTIZE" and ops[0].inputs == ("uint8",)  # raw pixels into the float CNN
    floats = {op.op for op in ops if "float32" in op.outputs}
    assert "CONV_2D" in floats and "FULLY_CONNECTED" not in floats


def test_calibration_methods_differ_and_an_unknown_one_is_refused(float_file) -> None:
    from export.formats.aeq import quantize_tflite

    float_model, calibration, _ = float_file
    recipe = Recipe.uniform(INT16X8)
    overall = quantize_tflite(float_model, recipe, calibration, MINMAX)
    assert quantize_tflite(float_model, recipe, calibration, MINMAX) == overall  # deterministic
    assert quantize_tflite(float_model, recipe, calibration, MOVING_AVERAGE) != overall
    with pytest.raises(ConversionError, match="calibrates with minmax or moving-average, not 'entropy'"):
        quantize_tflite(float_model, recipe, calibration, "entropy")
    with pytest.raises(ConversionError, match="needs calibration images"):
        quantize_tflite(float_model, recipe, None, MINMAX)
