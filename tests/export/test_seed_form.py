"""Why the unroller exists: the seed's recurrent form does not deploy, the unrolled form does.

The seed wraps its reservoir cell in ``keras.layers.RNN`` and follows it with
an ``LSTM``: a symbolic loop over time. The TFLite converter lowers that loop
to tensor-list ops that builtin kernels cannot run, and tf2onnx emits a
``Loop`` node. After ``export.graph.unroll`` both convert to plain static graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from cllnn_edge.config import ModelConfig
from cllnn_edge.model import build_model
from export.formats.isolate import Conversion
from export.formats.onnx import to_onnx_float
from export.formats.tflite import to_tflite
from export.graph.unroll import unroll

SMALL = ModelConfig(conv_filters=(4, 8, 16), reservoir_dim=32, lstm_units=8)

FLOAT = Conversion(calibration=None, opset=18, per_channel=True)  # float formats calibrate nothing

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SavedModels of the seed form (symbolic loop) and of its unrolled twin."""
    root = tmp_path_factory.mktemp("forms")
    seed_form = build_model(SMALL, unroll=False)
    seed_form.export(str(root / "seed_form"), verbose=False)
    unroll(seed_form).model.export(str(root / "unrolled"), verbose=False)
    return {"seed_form": root / "seed_form", "unrolled": root / "unrolled", "root": root}


def test_seed_form_fails_builtins_only_tflite(exported: dict[str, Path]) -> None:
    import tensorflow as tf

    with pytest.raises(Exception, match="TensorList") as failure:
        to_tflite(exported["seed_form"], exported["root"] / "seed.tflite", FLOAT, precision="float32")
    assert type(failure.value).__name__ == "ConverterError"
    assert tf.lite.OpsSet.TFLITE_BUILTINS  # the converter ran with builtins only


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_unrolled_form_converts_with_builtins(exported: dict[str, Path], precision: str) -> None:
    out = exported["root"] / f"unrolled_{precision}.tflite"
    calibration = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    calibration[0] = 255  # the calibration range must reach 255 for a lossless uint8 input
    calibration[1] = 0
    to_tflite(exported["unrolled"], out, Conversion(calibration, opset=18, per_channel=True),
              precision=precision)
    assert out.stat().st_size > 10_000


def test_seed_form_gives_a_loop_in_onnx_and_unrolled_does_not(exported: dict[str, Path]) -> None:
    seed_onnx = exported["root"] / "seed.onnx"
    unrolled_onnx = exported["root"] / "unrolled.onnx"
    to_onnx_float(exported["seed_form"], seed_onnx, FLOAT)
    to_onnx_float(exported["unrolled"], unrolled_onnx, FLOAT)
    seed_ops = {node.op_type for node in onnx.load(str(seed_onnx)).graph.node}
    unrolled_ops = {node.op_type for node in onnx.load(str(unrolled_onnx)).graph.node}
    assert "Loop" in seed_ops
    assert not unrolled_ops & {"Loop", "Scan", "LSTM", "RNN"}
    assert {"MatMul", "Tanh", "Sigmoid"} <= unrolled_ops


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("kill -SEGV $$", r"tflite-int8: converter crashed \(SIGSEGV\)"),
        ("echo 'error: ConverterError: op not supported' >&2; exit 1",
         r"tflite-int8: ConverterError: op not supported"),
    ],
)
def test_a_failing_converter_process_becomes_a_conversion_error(
    tmp_path: Path, script: str, message: str
) -> None:
    """A worker that dies by a signal, or fails, is reported with the format's name."""
    from export.errors import ConversionError
    from export.formats.isolate import Job, run_isolated

    worker = tmp_path / "python"
    worker.write_text(f"#!/bin/sh\n{script}\n")
    worker.chmod(0o755)
    job = Job(format="tflite-int8", source=str(tmp_path / "saved_model"), out=str(tmp_path / "x.tflite"))
    with pytest.raises(ConversionError, match=message):
        run_isolated(job, python=str(worker))
    assert not (tmp_path / "x.tflite").exists()
