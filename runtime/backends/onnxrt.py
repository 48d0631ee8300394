"""ONNX Runtime backend: ``.onnx`` files through ``onnxruntime.InferenceSession`` on the CPU.

An ``InferenceSession`` is safe to ``run`` from several threads at once, so one
session serves every caller. An ONNX graph has no quantization parameters on
its inputs and outputs (QDQ models take and return float), so the specs carry
none; a uint8 input is fed raw pixel values.

ONNX Runtime is handed the file's bytes, so a model that keeps tensors in
external data files (``location: "bias.bin"``) would have them read relative to
the process's working directory, outside the model's folder. Such models are
refused before ONNX Runtime sees them (``runtime.backends.onnx_ops.onnx_external_data``):
the export never writes them, and a device model is one file its manifest hashes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from runtime.errors import InferenceError, ModelLoadError
from runtime.artifacts.manifest import ONNXRUNTIME, ArtifactEntry, TensorSpec
from runtime.backends.model import RuntimeModel
from runtime.backends.onnx_ops import onnx_external_data, onnx_op_counts

_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
}


# ONNX Runtime graph optimizers this runtime turns off. QDQPropagationTransformer moves a
# QuantizeLinear backward over a MaxPool; after a float32 front (export.graph.unroll) that turned
# pool1 into a uint8 MaxPool in NCHW layout, a slow generic kernel: the int8 file ran at
# 0.67x the float32 file's time instead of 0.33x (x86 with AVX-512 VNNI, benchmarks/RESULTS.md).
# Float32 files and all-int8 graphs ran at the same speed with it off.
DISABLED_OPTIMIZERS = ("QDQPropagationTransformer",)


class NotOnnxError(ModelLoadError):
    """The file cannot be loaded as ONNX: onnxruntime is missing, or it cannot parse the file.
    The loader adds what the file is not (``runtime.loader``); the message says why not."""


def _onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise NotOnnxError("onnxruntime is not installed to load it as ONNX: pip install onnxruntime") from exc
    module: ModuleType = onnxruntime
    return module


def _ort_errors(ort: ModuleType) -> tuple[type[BaseException], ...]:
    """ONNX Runtime raises its own exception classes (plain ``Exception`` subclasses)."""
    state = ort.capi.onnxruntime_pybind11_state
    native = [obj for obj in vars(state).values() if isinstance(obj, type) and issubclass(obj, Exception)]
    return (ValueError, RuntimeError, OSError, *native)


def _refuse_external_data(path: Path, data: bytes) -> None:
    try:
        external = onnx_external_data(data)
    except ModelLoadError as exc:  # not a protobuf: not ONNX (the loader says what else it is not)
        raise NotOnnxError(f"the runtime cannot load it as ONNX: {exc}") from exc
    if external:
        first = external[0]
        raise ModelLoadError(
            f"{path.name}: {len(external)} tensor(s) keep their data in other files (e.g. {first.name!r} in "
            f"{first.location!r}); ONNX external data is refused (it would be read relative to the working "
            f"directory, not the model's folder): save the model as one file, e.g. "
            f"onnx.save_model(model, path, save_as_external_data=False)"
        )


def _spec(node: Any) -> TensorSpec:
    dtype = _ONNX_DTYPES.get(node.type, node.type)
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape)
    return TensorSpec(name=str(node.name), shape=shape, dtype=dtype)


class OnnxRuntimeModel(RuntimeModel):
    """An ``.onnx`` model; ``ops`` counts the main graph's node types, read without ``onnx``."""

    format = "onnx"
    backend = ONNXRUNTIME

    def __init__(self, path: Path, data: bytes, threads: int | None, entry: ArtifactEntry | None) -> None:
        _refuse_external_data(path, data)
        ort = _onnxruntime()
        self._errors = _ort_errors(ort)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except self._errors as exc:
            raise NotOnnxError(f"ONNX Runtime cannot load it: {exc}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(
                f"{path.name}: expected one input and at least one output, got {len(inputs)} and "
                f"{len(outputs)}"
            )
        # Output names: tf2onnx names them after the SavedModel signature (a Keras model's dict keys).
        input_spec, output_specs = _spec(inputs[0]), tuple(_spec(o) for o in outputs)
        for role, spec in (("input", input_spec), *(("output", s) for s in output_specs)):
            if spec.dtype not in _ONNX_DTYPES.values():
                raise ModelLoadError(f"{path.name}: unsupported {role} type {spec.dtype}")
        for spec in output_specs:
            if spec.dtype in ("uint8", "int8", "int16"):
                raise ModelLoadError(
                    f"{path.name}: expected a float output (an ONNX output carries no scale to "
                    f"dequantize with), got {spec.dtype}"
                )
        self._session: Any = session
        self._ops_counts = onnx_op_counts(data)
        super().__init__(path, input_spec, output_specs, threads, entry)

    def _run_impl(self, model_input: np.ndarray) -> list[np.ndarray]:
        session = self._session
        if session is None:  # closed by another thread since predict() checked
            self._check_open()
        try:
            outputs = session.run(
                [spec.name for spec in self.output_specs], {self._input_spec.name: model_input}
            )
        except self._errors as exc:
            raise InferenceError(
                f"{self.path.name}: ONNX Runtime failed on input {model_input.shape}: {exc}"
            ) from exc
        return [np.asarray(output) for output in outputs]

    def _close_impl(self) -> None:
        self._session = None

    def _ops_impl(self) -> dict[str, int]:
        return dict(self._ops_counts)
