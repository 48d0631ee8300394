"""Corrupt files give a Python exception, never a dead process; runtime never imports TensorFlow.

Each load runs in a subprocess so that a crash shows up as a signal (a negative
return code) instead of taking pytest down.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime.conftest import TinyModels
from tests.runtime.helpers import LOAD_SCRIPT, describe, run_python


def _expect_clean_error(path: Path, match: str, error: str = "ModelLoadError") -> None:
    result = run_python(LOAD_SCRIPT, str(path))
    assert result.returncode == 3, describe(result)
    assert result.stdout.startswith(f"{error}: "), describe(result)
    assert match in result.stdout, describe(result)


@pytest.mark.parametrize("name", ["int8_tflite", "fp32_tflite", "fp32_onnx", "int8_onnx"])
@pytest.mark.parametrize("fraction", [0.5, 0.98])
def test_truncated_file(tiny: TinyModels, tmp_path: Path, name: str, fraction: float) -> None:
    source = tiny.all()[name]
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[: int(len(data) * fraction)])
    _expect_clean_error(path, "cannot load it")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", ".bin"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes(tmp_path: Path, suffix: str, seed: int) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    _expect_clean_error(path, "cannot load it")  # ONNX Runtime, or the runtime's own protobuf reader first


@pytest.mark.parametrize("root", [b"\x10\x00\x00\x00", b"\xff\xff\xff\x7f"])
def test_random_bytes_with_a_tflite_header(tmp_path: Path, root: bytes) -> None:
    noise = np.random.default_rng(2).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    path = tmp_path / "random.tflite"
    path.write_bytes(root + b"TFL3" + noise)
    _expect_clean_error(path, "random.tflite: ")


def test_tampered_file_with_manifest_is_refused_before_parsing(tiny: TinyModels, tmp_path: Path) -> None:
    from tests.runtime.test_load import _write_manifest

    path = Path(shutil.copyfile(tiny.int8_tflite, tmp_path / "int8.tflite"))
    _write_manifest(tmp_path, path)
    path.write_bytes(_corrupt(path.read_bytes(), _input_zero_point))  # would crash LiteRT unchecked
    _expect_clean_error(path, "does not match its manifest", error="ManifestError")


# -- structurally valid flatbuffers with values that segfault LiteRT's kernels -----------------
def _corrupt(data: bytes, edit: Callable[[Any], None]) -> bytes:
    """Re-pack a .tflite after editing its object tree (the schema ships with ai-edge-litert)."""
    flatbuffers = pytest.importorskip("flatbuffers")
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _input_zero_point(model: Any) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].quantization.zeroPoint = [851968]


def _input_batch(model: Any) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].shape = np.array([3_000_000, 28, 28, 1], np.int32)


def _absent_first_input(model: Any) -> None:
    op = next(op for op in model.subgraphs[0].operators if len(op.inputs) >= 2)
    op.inputs = np.array([-1, *op.inputs[1:]], np.int32)


def _absent_weights(model: Any) -> None:
    graph = model.subgraphs[0]
    fully_connected = next(i for i, code in enumerate(model.operatorCodes) if code.builtinCode == 9)
    op = next(op for op in graph.operators if op.opcodeIndex == fully_connected)
    op.inputs = np.array([op.inputs[0], -1, *op.inputs[2:]], np.int32)


def _writes_graph_input(model: Any) -> None:
    graph = model.subgraphs[0]
    last = graph.operators[-1]
    last.outputs = np.array([graph.inputs[0]], np.int32)


def _no_subgraphs(model: Any) -> None:
    model.subgraphs = None


def _unquantized_weights(model: Any) -> None:
    graph = model.subgraphs[0]
    fully_connected = next(i for i, code in enumerate(model.operatorCodes) if code.builtinCode == 9)
    op = next(op for op in graph.operators if op.opcodeIndex == fully_connected)
    graph.tensors[op.inputs[1]].quantization = None


def _reshape_rank(model: Any) -> None:
    graph = model.subgraphs[0]
    reshape = next(i for i, code in enumerate(model.operatorCodes) if code.builtinCode == 22)
    op = next(op for op in graph.operators if op.opcodeIndex == reshape)
    graph.tensors[op.outputs[0]].shape = np.array([1, 784, 1], np.int32)
    graph.tensors[op.outputs[0]].shapeSignature = np.array([-1, 784, 1], np.int32)


def _softmax_to_batch_matmul(model: Any) -> None:
    code = next(code for code in model.operatorCodes if code.builtinCode == 25)
    code.builtinCode = code.deprecatedBuiltinCode = 126


def _negative_scale(model: Any) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.outputs[0]].quantization.scale = [-0.5]


def _elementwise_output_shape(model: Any) -> None:
    """A fully static SOFTMAX whose output claims 1,441,792 elements (as a DEQUANTIZE's did after one
    flipped bit in the fuzz corpus: XNNPACK segfaulted in allocate_tensors)."""
    graph = model.subgraphs[0]
    softmax = next(i for i, code in enumerate(model.operatorCodes) if code.builtinCode == 25)
    op = next(op for op in graph.operators if op.opcodeIndex == softmax)
    for index in (*op.inputs, *op.outputs):
        graph.tensors[index].shapeSignature = None
    graph.tensors[op.inputs[0]].shape = np.array([1, 10], np.int32)
    graph.tensors[op.outputs[0]].shape = np.array([1441792], np.int32)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_input_zero_point, "expected uint8 zero points in [0, 255], got values in [851968, 851968]"),
        (_input_batch, "shape [3000000, 28, 28, 1] needs more than"),
        (_absent_first_input, "required input(s) [0] are absent"),
        (_absent_weights, "(FULLY_CONNECTED): required input(s) [1] are absent"),
        (_writes_graph_input, "that are absent, graph inputs or written twice"),
        (_no_subgraphs, "expected a TFLite model with subgraphs, got none"),
        (_negative_scale, "expected quantization scales in"),
        (_unquantized_weights, "has no quantization parameters while the model's other int8 tensors do"),
        (_reshape_rank, "(RESHAPE): a shape operand of 2 entries for a rank-3 output"),
        (_softmax_to_batch_matmul, "(BATCH_MATMUL): expected 2..2 inputs, got 1"),
        (_elementwise_output_shape, "(SOFTMAX): inputs of shapes [(1, 10)] cannot give an output of shape [1441792]"),
    ],
    ids=[
        "zero-point",
        "huge-batch",
        "absent-first-input",
        "absent-weights",
        "writes-input",
        "no-subgraphs",
        "scale",
        "unquantized-weights",
        "reshape-rank",
        "op-code",
        "elementwise-shape",
    ],
)
def test_semantically_corrupt_tflite(
    tiny: TinyModels, tmp_path: Path, edit: Callable[[Any], None], match: str
) -> None:
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(_corrupt(tiny.int8_tflite.read_bytes(), edit))
    _expect_clean_error(path, match)


# -- independence from TensorFlow ---------------------------------------------------------------
INDEPENDENCE_SCRIPT = """
import sys
import numpy as np
import runtime
images = np.zeros((3, 28, 28), np.uint8)
for path in sys.argv[1:]:
    with runtime.load(path) as model:
        probabilities = model.predict(images)
        assert probabilities.shape == (3, 10) and probabilities.dtype == np.float32
        assert model.ops
heavy = ("tensorflow", "keras", "tf2onnx", "onnx", "cllnn_edge", "export")
heavy = sorted(name for name in heavy if name in sys.modules)
print("heavy:", heavy)
assert heavy == [], heavy
"""


def test_runtime_never_imports_tensorflow(tiny: TinyModels) -> None:
    result = run_python(
        INDEPENDENCE_SCRIPT, str(tiny.int8_tflite), str(tiny.fp32_tflite), str(tiny.int8_onnx)
    )
    assert result.returncode == 0, describe(result)
    assert "heavy: []" in result.stdout


BLOCKED_SCRIPT = """
import sys
sys.modules[sys.argv[1]] = None  # as if the package were not installed
import numpy as np
import runtime
with runtime.load(sys.argv[2]) as model:
    assert model.predict(np.zeros((28, 28), np.uint8)).shape == (1, 10)
try:
    runtime.load(sys.argv[3])
except runtime.ModelLoadError as exc:
    print(f"ModelLoadError: {exc}")
"""


@pytest.mark.parametrize(
    ("blocked", "works", "refused", "message"),
    [
        ("ai_edge_litert", "fp32_onnx", "int8_tflite", "needs ai-edge-litert or tflite-runtime: pip install ai-edge-litert"),
        ("onnxruntime", "int8_tflite", "fp32_onnx", "onnxruntime is not installed"),
    ],
)
def test_one_backend_is_enough(
    tiny: TinyModels, blocked: str, works: str, refused: str, message: str
) -> None:
    models = tiny.all()
    result = run_python(BLOCKED_SCRIPT, blocked, str(models[works]), str(models[refused]))
    assert result.returncode == 0, describe(result)
    assert message in result.stdout, describe(result)
