"""LiteRT backend: ``.tflite`` files through ``ai_edge_litert.interpreter.Interpreter``, or through
``tflite_runtime.interpreter.Interpreter`` (the same API; the runtime many board images still pin)
when ai-edge-litert is absent or ``interpreter="tflite-runtime"`` is asked for (``runtime.load(...,
backend="tflite-runtime")``). Which one runs a model is its ``interpreter_package``.

A LiteRT interpreter is not thread-safe, so the model keeps a small pool of
interpreters built from the same verified bytes: a call borrows one, and a
second is built only when calls overlap (at most one per CPU). Each
interpreter remembers the batch size it is allocated for, so repeated
same-size calls skip ``resize_tensor_input`` / ``allocate_tensors``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from runtime.errors import InferenceError, ModelLoadError, RuntimeRefusedError
from runtime.artifacts.compat import LITERT_PACKAGE, TFLITE_RUNTIME_PACKAGE, installed
from runtime.artifacts.manifest import LITERT, ArtifactEntry, TensorSpec
from runtime.backends.model import RuntimeModel
from runtime.backends.tflite_check import (
    check_header,
    check_interpreter,
    looks_like_tflite,
    op_details,
    tensor_details,
)

_LOAD_ERRORS = (ValueError, RuntimeError, UnicodeDecodeError)


class OpDtypes(NamedTuple):
    """One op of a TFLite graph with the dtypes of its operands and results."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


# The packages whose Interpreter runs a .tflite file, in the order tried, and their interpreter modules.
INTERPRETER_MODULES = {LITERT_PACKAGE: "ai_edge_litert.interpreter",
                       TFLITE_RUNTIME_PACKAGE: "tflite_runtime.interpreter"}


def interpreter_module(package: str | None = None) -> tuple[str, ModuleType]:
    """The package that runs .tflite files here and its interpreter module: ``package`` when given,
    else ai-edge-litert, else tflite-runtime (a device may have only that one)."""
    if package is not None and package not in INTERPRETER_MODULES:
        raise ValueError(f"a .tflite file runs on {' or '.join(INTERPRETER_MODULES)}, not {package!r}")
    for candidate in [package] if package is not None else list(INTERPRETER_MODULES):
        try:
            return candidate, importlib.import_module(INTERPRETER_MODULES[candidate])
        except ImportError:
            continue
    wanted = package or " or ".join(INTERPRETER_MODULES)
    raise ModelLoadError(f"loading a .tflite model needs {wanted}: pip install {package or LITERT_PACKAGE}")


def interpreter_version(package: str | None = None) -> tuple[str, str] | None:
    """(package, version) of the interpreter ``interpreter_module`` would use; None when there is none."""
    try:
        chosen, _ = interpreter_module(package)
    except ModelLoadError:
        return None
    return chosen, installed(chosen) or "unknown"


def new_interpreter(data: bytes, name: str, threads: int | None, delegates: bool = True,
                    package: str | None = None) -> Any:
    """An unallocated interpreter for ``data``, after ``check_header`` (LiteRT's own flatbuffer
    verifier runs in its constructor); the checked way to build one, for tools beside the runtime.
    ``delegates=False`` lists builtin ops instead of a DELEGATE node (XNNPACK off). ``package``: as
    ``interpreter_module``."""
    check_header(data, name)
    package, module = interpreter_module(package)
    resolver = (
        module.OpResolverType.AUTO if delegates else module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        return module.Interpreter(
            model_content=data, num_threads=threads, experimental_op_resolver_type=resolver
        )
    except _LOAD_ERRORS as exc:
        message = f"{name}: {package} cannot load it: {exc}"
        if "Didn't find op" in str(exc):  # an op version this runtime lacks: the file itself is fine
            raise RuntimeRefusedError(message) from exc
        raise ModelLoadError(message) from exc


def tensor_spec(details: dict[str, Any], name: str | None = None) -> TensorSpec:
    """A tensor as the manifest records it, from LiteRT's tensor details (the batch as in the file)."""
    shape = tuple(int(d) for d in details["shape_signature"]) or tuple(int(d) for d in details["shape"])
    scale, zero_point = details["quantization"]
    quantized = float(scale) != 0.0
    return TensorSpec(
        name=name or str(details["name"]),
        shape=shape,
        dtype=np.dtype(details["dtype"]).name,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )


def output_names(interpreter: Any, outputs: list[int]) -> dict[int, str]:
    """Output tensor index -> the name the exporting model gave that output.

    A converted file keeps the SavedModel's SignatureDef, whose output names
    are the model's own (a Keras model's dict keys, or ``output_0``,
    ``output_1``, ... for a list), while its tensors carry generated names
    (``StatefulPartitionedCall:1``). A file with one signature over exactly
    its outputs is named from it; any other file keeps its tensor names.
    """
    try:
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            return {}
        details = interpreter.get_signature_runner(next(iter(signatures))).get_output_details()
    except (ValueError, RuntimeError, KeyError):
        return {}
    named = {int(d["index"]): str(name) for name, d in details.items()}
    return named if sorted(named) == sorted(outputs) else {}


@dataclass
class _Slot:
    """One interpreter and the batch size its tensors are allocated for."""

    interpreter: Any
    batch: int | None  # None until tensors are allocated


class LiteRTModel(RuntimeModel):
    """A ``.tflite`` model; ``ops`` lists builtin ops with XNNPACK off, so no DELEGATE node hides them."""

    format = "tflite"
    backend = LITERT

    def __init__(self, path: Path, data: bytes, threads: int | None, entry: ArtifactEntry | None,
                 package: str | None = None) -> None:
        if not looks_like_tflite(data):
            raise ModelLoadError(
                f"{path.name}: expected a TFLite flatbuffer ('TFL3' at bytes 4..8), got {data[4:8]!r}"
            )
        self._data = data
        self._name = path.name
        self.interpreter_package, _ = interpreter_module(package)
        first = new_interpreter(data, path.name, threads, package=self.interpreter_package)
        check_interpreter(first, path.name)
        inputs = first._interpreter.InputIndices()
        outputs = [int(i) for i in first._interpreter.OutputIndices()]
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(
                f"{path.name}: expected one input and at least one output, got {len(inputs)} and "
                f"{len(outputs)}"
            )
        self._input_index = int(inputs[0])
        self._output_indices = tuple(outputs)
        names = output_names(first, outputs)
        input_spec = tensor_spec(tensor_details(first, self._input_index, path.name))
        output_specs = tuple(tensor_spec(tensor_details(first, i, path.name), names.get(i)) for i in outputs)
        super().__init__(path, input_spec, output_specs, threads, entry)
        try:
            first.allocate_tensors()
        except _LOAD_ERRORS as exc:  # a kernel's prepare refused its types: this runtime lacks them
            raise RuntimeRefusedError(f"{path.name}: {self.interpreter_package} cannot prepare the model: "
                                      f"{exc}") from exc
        slot = _Slot(first, batch=int(first.get_input_details()[0]["shape"][0]))
        self._idle: list[_Slot] = [slot]
        self._live = 1
        self._max_live = max(1, os.cpu_count() or 1)
        self._pool = threading.Condition()

    # -- interpreter pool -------------------------------------------------------------
    def _acquire(self) -> _Slot:
        with self._pool:
            while True:
                self._check_open()
                if self._idle:
                    return self._idle.pop()
                if self._live < self._max_live:
                    self._live += 1
                    break
                self._pool.wait()
        try:
            return _Slot(new_interpreter(self._data, self._name, self._threads,
                                         package=self.interpreter_package), batch=None)
        except BaseException:
            with self._pool:
                self._live -= 1
                self._pool.notify()
            raise

    def _release(self, slot: _Slot) -> None:
        with self._pool:
            if self.closed:
                self._live -= 1
            else:
                self._idle.append(slot)
            self._pool.notify()

    def _prepare(self, slot: _Slot, batch: int) -> None:
        """Size the interpreter for ``batch`` images (only the dynamic batch axis may change)."""
        if slot.batch == batch:
            return
        shape = [batch, *self._input_spec.shape[1:]]
        try:
            slot.interpreter.resize_tensor_input(self._input_index, shape, strict=True)
            slot.interpreter.allocate_tensors()
        except _LOAD_ERRORS as exc:
            slot.batch = None
            raise InferenceError(
                f"{self._name}: LiteRT cannot prepare the model for input shape {shape}: {exc}"
            ) from exc
        slot.batch = batch

    # -- hooks ---------------------------------------------------------------------------
    def _run_impl(self, model_input: np.ndarray) -> list[np.ndarray]:
        slot = self._acquire()
        try:
            self._prepare(slot, len(model_input))
            interpreter = slot.interpreter
            interpreter.set_tensor(self._input_index, model_input)
            interpreter.invoke()
            return [interpreter.get_tensor(index) for index in self._output_indices]
        except (ValueError, RuntimeError) as exc:
            if isinstance(exc, InferenceError):
                raise
            raise InferenceError(f"{self._name}: LiteRT failed on input {model_input.shape}: {exc}") from exc
        finally:
            self._release(slot)

    def _close_impl(self) -> None:
        with self._pool:
            self._live -= len(self._idle)
            self._idle.clear()
            self._pool.notify_all()

    def _ops_impl(self) -> dict[str, int]:
        return dict(Counter(op.op for op in self.op_dtypes()))

    def op_dtypes(self) -> list[OpDtypes]:
        """Each op with its operand and result dtypes, in execution order (see ``tflite_op_dtypes``)."""
        return op_dtypes_of(new_interpreter(self._data, self._name, None, delegates=False,
                                          package=self.interpreter_package), self._name)


def op_dtypes_of(interpreter: Any, name: str) -> list[OpDtypes]:
    ops = op_details(interpreter, name)
    if ops and "operand_types" not in ops[0]:  # tflite-runtime 2.14's op details carry no dtypes
        raise ModelLoadError(f"{name}: this interpreter does not list its ops' dtypes (an older runtime)")
    return [
        OpDtypes(
            op=str(op["op_name"]),
            inputs=tuple(np.dtype(t).name for t in op["operand_types"]),
            outputs=tuple(np.dtype(t).name for t in op["result_types"]),
        )
        for op in ops
    ]


def op_signatures(ops: list[OpDtypes]) -> dict[str, tuple[str, ...]]:
    """Op -> its distinct ``"in,in->out"`` dtype signatures, as ``RuntimeNeeds.op_types`` records them."""
    signatures: dict[str, set[str]] = {}
    for op in ops:
        signatures.setdefault(op.op, set()).add(f"{','.join(op.inputs)}->{','.join(op.outputs)}")
    return {op: tuple(sorted(found)) for op, found in sorted(signatures.items())}


def tflite_op_dtypes(path: str | Path) -> list[OpDtypes]:
    """Ops of a ``.tflite`` file with their tensor dtypes, without running it.

    Lets a caller prove that a full-int8 model has no float kernel between its
    input and output. Operands include constants (weights, int32 biases); an
    absent optional operand is left out. XNNPACK is disabled for the listing
    so the builtin ops are shown instead of a DELEGATE node. Covers the main
    subgraph only.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    return op_dtypes_of(checked_interpreter(data, path.name), path.name)


def checked_interpreter(data: bytes, name: str) -> Any:
    """An unallocated interpreter (XNNPACK off) for bytes that must be a TFLite file, after LiteRT's
    flatbuffer verifier and ``check_interpreter``: the checks for a tool that reads the file's
    graph, or for another runtime that trusts the bytes unverified (``runtime.backends.tflm``)."""
    if not looks_like_tflite(data):
        raise ModelLoadError(f"{name}: expected a TFLite flatbuffer ('TFL3' at bytes 4..8), got {data[4:8]!r}")
    interpreter = new_interpreter(data, name, None, delegates=False)
    check_interpreter(interpreter, name)
    return interpreter
