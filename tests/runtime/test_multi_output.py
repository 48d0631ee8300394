"""Files with several outputs (stage probes): ``predict_outputs`` reads them, ``predict`` refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.errors import InferenceError
from tests.runtime.conftest import MULTI_OUTPUT_SHAPES, MultiOutputModels, TinyModels


def _files(models: MultiOutputModels) -> dict[str, Path]:
    return {"fp32_tflite": models.fp32_tflite, "int8_tflite": models.int8_tflite,
            "fp32_onnx": models.fp32_onnx}


@pytest.mark.parametrize("name", ["fp32_tflite", "int8_tflite", "fp32_onnx"])
def test_outputs_come_by_the_names_the_model_gave_them(multi_output: MultiOutputModels, name: str) -> None:
    with runtime.load(_files(multi_output)[name]) as model:
        assert {spec.name: spec.shape[1:] for spec in model.output_specs} == MULTI_OUTPUT_SHAPES
        outputs = model.predict_outputs(multi_output.images)
    assert {k: o.shape for k, o in outputs.items()} == {
        k: (len(multi_output.images), *s) for k, s in MULTI_OUTPUT_SHAPES.items()}
    assert all(o.dtype == np.float32 for o in outputs.values())


@pytest.mark.parametrize("name", ["fp32_tflite", "fp32_onnx"])
def test_float_outputs_match_keras(multi_output: MultiOutputModels, name: str) -> None:
    with runtime.load(_files(multi_output)[name]) as model:
        outputs = model.predict_outputs(multi_output.images)
    assert set(outputs) == set(multi_output.reference)
    for name, want in multi_output.reference.items():
        np.testing.assert_allclose(outputs[name], want, atol=1e-5, err_msg=name)


def test_int8_outputs_are_dequantized_each_with_its_own_scale(multi_output: MultiOutputModels) -> None:
    from ai_edge_litert.interpreter import Interpreter

    with runtime.load(multi_output.int8_tflite) as model:
        specs = model.output_specs
        outputs = model.predict_outputs(multi_output.images)
    assert all(spec.dtype == "int8" and spec.scale is not None for spec in specs)
    assert len({spec.scale for spec in specs}) == len(specs)  # really one scale each

    # The raw int8 tensors, read by tensor name straight from LiteRT.
    interpreter = Interpreter(model_path=str(multi_output.int8_tflite))
    interpreter.resize_tensor_input(0, [len(multi_output.images), 28, 28, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], multi_output.images[..., None])
    interpreter.invoke()
    signature = interpreter.get_signature_runner("serve").get_output_details()
    for spec in specs:
        got, want = outputs[spec.name], multi_output.reference[spec.name]
        raw = interpreter.get_tensor(signature[spec.name]["index"]).astype(np.float32)
        np.testing.assert_array_equal(got, (raw - spec.zero_point) * np.float32(spec.scale))
        # Not renormalised, and close to Keras (normalised RMSE; measured 0.007, 0.031 and 0.106
        # for the three outputs on x86 AVX-512 VNNI, 2026-11-29).
        rmse = np.sqrt(np.mean((got - want) ** 2)) / (np.std(want) + 1e-12)
        assert rmse < 0.15, (spec.name, rmse)


@pytest.mark.parametrize("name", ["fp32_tflite", "int8_tflite", "fp32_onnx"])
def test_predict_refuses_a_multi_output_file(multi_output: MultiOutputModels, name: str) -> None:
    with runtime.load(_files(multi_output)[name]) as model:
        with pytest.raises(InferenceError, match="3 outputs.*predict_outputs"):
            model.predict(multi_output.images)


def test_predict_outputs_of_a_one_output_file_is_predict_before_renormalising(tiny: TinyModels) -> None:
    with runtime.load(tiny.fp32_tflite) as model:
        (only,) = model.predict_outputs(tiny.images).values()
        np.testing.assert_array_equal(only, model.predict(tiny.images))
    with runtime.load(tiny.int8_tflite) as model:
        (only,) = model.predict_outputs(tiny.images).values()
        probs = model.predict(tiny.images)
        spec = model.output_spec
    assert only.shape == probs.shape
    np.testing.assert_allclose(only / only.sum(axis=1, keepdims=True), probs, atol=1e-6)
    assert np.all(np.isin(np.round(only / spec.scale), np.arange(-1, 257)))  # multiples of the scale


def test_predict_outputs_runs_a_fixed_batch_file_in_chunks(tiny: TinyModels) -> None:
    with runtime.load(tiny.fixed_batch_tflite) as model:
        (only,) = model.predict_outputs(tiny.images[:5]).values()
    np.testing.assert_allclose(only, tiny.reference[:5], atol=1e-5)


def test_predict_outputs_checks_images_like_predict(multi_output: MultiOutputModels) -> None:
    with runtime.load(multi_output.fp32_onnx) as model:
        with pytest.raises(runtime.InputError):
            model.predict_outputs(np.zeros((2, 27, 28), np.uint8))
    with pytest.raises(runtime.ModelClosedError):
        model.predict_outputs(multi_output.images)
