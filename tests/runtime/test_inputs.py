"""Bad input to predict(): a ValueError (InputError) that says what was expected and what came."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import runtime
from runtime.backends.images import as_image_batch, decode, encode
from runtime.artifacts.manifest import TensorSpec
from tests.runtime.conftest import TinyModels

FORMATS = ["fp32_tflite", "int8_tflite", "fp32_onnx", "int8_onnx"]
SHAPES = r"expected images shaped \(28, 28\), \(N, 28, 28\) or \(N, 28, 28, 1\)"


@pytest.fixture(params=FORMATS)
def model(request: pytest.FixtureRequest, tiny: TinyModels) -> Iterator[runtime.RuntimeModel]:
    with runtime.load(tiny.all()[request.param]) as loaded:
        yield loaded


BAD_INPUTS = [
    pytest.param(np.zeros((28, 28, 3), np.uint8), SHAPES + r", got \(28, 28, 3\)", id="rgb"),
    pytest.param(
        np.zeros((28, 28, 1), np.uint8), r"got \(28, 28, 1\); for a single image in HWC layout", id="hwc"
    ),
    pytest.param(np.zeros((2, 32, 32), np.uint8), SHAPES + r", got \(2, 32, 32\)", id="size"),
    pytest.param(np.zeros((2, 28, 28, 2), np.uint8), SHAPES + r", got \(2, 28, 28, 2\)", id="channels"),
    pytest.param(np.zeros((1, 1, 28, 28, 1), np.uint8), SHAPES + r", got \(1, 1, 28, 28, 1\)", id="rank5"),
    pytest.param(np.zeros(784, np.uint8), SHAPES + r", got \(784,\)", id="flat"),
    pytest.param(np.uint8(7), SHAPES + r", got \(\)", id="scalar"),
    pytest.param(
        np.zeros((0, 28, 28), np.uint8),
        r"expected at least one image, got an empty batch of shape \(0, 28, 28\)",
        id="empty",
    ),
    pytest.param(np.zeros((0, 28, 28, 1), np.float32), r"empty batch", id="empty-float"),
    pytest.param(
        np.zeros((2, 28, 28), np.int64),
        r"expected dtype uint8 \(or a float dtype .*\), got int64",
        id="int64",
    ),
    pytest.param(np.zeros((2, 28, 28), np.int8), r"got int8", id="int8"),
    pytest.param(np.zeros((2, 28, 28), np.uint16), r"got uint16", id="uint16"),
    pytest.param(np.zeros((2, 28, 28), bool), r"expected dtype uint8 .*, got bool", id="bool"),
    pytest.param(np.full((2, 28, 28), "x"), r"expected dtype uint8 .*, got <U1", id="strings"),
    pytest.param(np.zeros((2, 28, 28), np.complex64), r"got complex64", id="complex"),
    pytest.param(np.zeros((2, 28, 28), object), r"got object", id="object"),
    pytest.param([[0] * 28] * 28, r"got int64", id="list-of-ints"),
    pytest.param("image.png", r"expected a uint8 or float image array, got str", id="str"),
    pytest.param(None, r"got object", id="none"),
]


@pytest.mark.parametrize(("images", "match"), BAD_INPUTS)
def test_bad_input_is_a_value_error(model: runtime.RuntimeModel, images: object, match: str) -> None:
    with pytest.raises(runtime.InputError, match=match) as info:
        model.predict(images)
    assert isinstance(info.value, ValueError)


def _with(value: float, dtype: type = np.float32) -> np.ndarray:
    images: np.ndarray = np.full((3, 28, 28), 100.0, dtype=dtype)
    images[1, 5, 5] = value
    return images


@pytest.mark.parametrize(
    ("images", "match"),
    [
        pytest.param(_with(np.nan), r"expected finite pixel values 0..255, got 1 NaN and 0 inf", id="nan"),
        pytest.param(_with(np.inf), r"got 0 NaN and 1 inf", id="inf"),
        pytest.param(_with(-np.inf, np.float64), r"got 0 NaN and 1 inf", id="-inf-f64"),
        pytest.param(_with(np.nan, np.float16), r"1 NaN", id="nan-f16"),
        pytest.param(
            _with(255.5),
            r"expected raw pixel values in \[0, 255\] .*got values in \[100, 255.5\]",
            id="above",
        ),
        pytest.param(_with(-0.5), r"got values in \[-0.5, 100\]", id="below"),
        pytest.param(np.full((2, 28, 28), -3.0, np.float64), r"got values in \[-3, -3\]", id="standardised"),
    ],
)
def test_bad_float_values(model: runtime.RuntimeModel, images: np.ndarray, match: str) -> None:
    with pytest.raises(runtime.InputError, match=match):
        model.predict(images)


def test_float_boundaries_are_accepted(model: runtime.RuntimeModel) -> None:
    images = np.zeros((2, 28, 28), np.float32)
    images[1] = 255.0
    assert model.predict(images).shape == (2, 10)


def test_closed_model_refuses(tiny: TinyModels) -> None:
    model = runtime.load(tiny.fp32_tflite)
    model.close()
    model.close()  # idempotent
    assert model.closed
    with pytest.raises(runtime.ModelClosedError, match="model is closed"):
        model.predict(tiny.images[:1])


def test_quantize_rounds_and_saturates() -> None:
    spec = TensorSpec("x", (-1, 28, 28, 1), "int8", scale=2.0, zero_point=10)
    batch = as_image_batch(np.array([[0.0, 3.0, 255.0] + [0.0] * 25] * 28, np.float32), 28, 28)
    quantized = encode(batch, spec)
    assert quantized.dtype == np.int8
    # q = rint(x / scale) + zero_point, saturated: 0 -> 10, 3 -> rint(1.5) + 10 = 12, 255 -> 138 -> 127
    assert quantized[0, 0, :3, 0].tolist() == [10, 12, 127]
    out = TensorSpec("y", (-1, 10), "int8", scale=0.5, zero_point=-128)
    # dequantized (0, 64, 127.5), then renormalised to a probability distribution
    np.testing.assert_allclose(
        decode(np.array([[-128, 0, 127]], np.int8), out), [[0.0, 64.0 / 191.5, 127.5 / 191.5]]
    )


def test_dequantized_probabilities_sum_to_one() -> None:
    """An int8 softmax rounds each class to 1/256; the runtime renormalises the sum."""
    out = TensorSpec("y", (-1, 10), "int8", scale=1 / 256, zero_point=-128)
    raw = np.array([[-128 + 26] * 9 + [-128 + 26 + 15], [-128] * 10], np.int8)  # sums 249/256 and 0
    probs = decode(raw, out)
    assert abs(float(probs[0].sum()) - 1.0) < 1e-6
    np.testing.assert_array_equal(probs[1], np.zeros(10))  # all-zero rows stay zero


def test_colour_images_are_taken_channels_last_one_or_many() -> None:
    one = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
    batch = as_image_batch(one, 8, 6, 3)
    assert batch.shape == (1, 8, 6, 3) and np.array_equal(batch[0], one)
    assert as_image_batch(np.stack([one, one]), 8, 6, 3).shape == (2, 8, 6, 3)


@pytest.mark.parametrize(("images", "match"), [
    (np.zeros((2, 8, 6), np.uint8), r"expected images shaped \(8, 6, 3\) or \(N, 8, 6, 3\), got \(2, 8, 6\)$"),
    (np.zeros((2, 3, 8, 6), np.uint8), r"got \(2, 3, 8, 6\); images must be channels-last"),
    (np.zeros((2, 8, 6, 1), np.uint8), r"got \(2, 8, 6, 1\)$"),
])
def test_a_colour_model_names_its_shape_and_refuses_grey_or_channels_first(images: np.ndarray, match: str) -> None:
    with pytest.raises(runtime.InputError, match=match):
        as_image_batch(images, 8, 6, 3)
