"""Which converted ops the int8 converters keep in float32: matched by Keras layer, as named in both converters."""

from __future__ import annotations

import pytest

from export.formats.isolate import Conversion

FRONT = Conversion(calibration=None, opset=18, per_channel=True, float_layers=("standardize", "conv1", "pool1"))


@pytest.mark.parametrize("node", [
    "cllnn_unrolled_1/standardize_1/sub",  # TFLite op name
    "cllnn_unrolled_1/conv1_1/Relu;cllnn_unrolled_1/conv1_1/BiasAdd;cllnn_unrolled_1/conv1_1/convolution",
    "cllnn_unrolled_probe_1/pool1_1/MaxPool2d",  # the stage probe's graph
    "StatefulPartitionedCall/cllnn_unrolled_1/conv1_1/BiasAdd",  # tf2onnx node name
    "StatefulPartitionedCall/cllnn_unrolled_1/pool1/MaxPool2d",
])
def test_front_layers_are_kept_float(node: str) -> None:
    assert FRONT.keeps_float(node)


@pytest.mark.parametrize("node", [
    "cllnn_unrolled_1/conv2_1/Relu",
    "cllnn_unrolled_1/conv1_outliers_1/convolution",  # another layer whose name starts alike
    "cllnn_unrolled_1/conv10_1/Relu",
    "StatefulPartitionedCall/cllnn_unrolled_1/reservoir_in_1/MatMul",
])
def test_other_layers_are_quantized(node: str) -> None:
    assert not FRONT.keeps_float(node)


def test_no_float_layers_keeps_nothing() -> None:
    plain = Conversion(calibration=None, opset=18, per_channel=True)
    assert not plain.keeps_float("cllnn_unrolled_1/conv1_1/Relu")
