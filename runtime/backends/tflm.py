"""TensorFlow Lite Micro backend: a ``.tflite`` file on TFLM's kernels, as a microcontroller runs it.

The ``tflite-micro`` package (``pip install 'cllnn-edge[tflm]'``, x86-64 Linux
wheels) is TFLM's interpreter built for the host: the same C++ kernels (the
portable reference ones) and the same arena planner a board runs, without an
operating system's help. Nothing else in ``runtime`` needs it.

TFLM plans every tensor into one caller-given block of memory, the tensor
arena, and reads the flatbuffer without verifying it. So the bytes first pass
LiteRT's verifier and ``runtime.backends.tflite_check`` (both already device
dependencies), then TFLM builds its interpreter in an arena of a known size:
the ``arena_bytes`` the manifest records (``details.mcu``), else the smallest
arena found by search (``smallest_arena``) plus ``arena_margin``. An arena
too small is a ``ModelLoadError`` that quotes TFLM's own account of what it
was missing. The batch is 1 (TFLM does not resize tensors); ``predict`` runs
larger batches an image at a time. One interpreter, used under a lock: TFLM
runs on one thread.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from runtime.errors import InferenceError, ModelLoadError
from runtime.backends.litert import checked_interpreter, output_names, tensor_spec
from runtime.artifacts.manifest import TFLM, ArtifactEntry
from runtime.backends.model import RuntimeModel
from runtime.backends.tflite_check import op_details, tensor_details

INSTALL_HINT = "pip install 'cllnn-edge[tflm]' (the tflite-micro package; x86-64 Linux wheels)"
ARENA_ALIGNMENT = 16  # TFLM aligns the arena and every buffer in it to 16 bytes
# TFLM keeps its own allocator objects in the arena; tflite-micro's host build crashed (SIGSEGV)
# for arenas under 464 bytes instead of reporting the failure. Smaller ones are refused first.
MIN_ARENA_BYTES = 1024
MAX_ARENA_BYTES = 1 << 30  # the search gives up above this: no microcontroller has 1 GiB of RAM
# The arena to allocate on a board is the smallest one the host ran the file in, plus a margin:
# the host runs TFLM's reference kernels, while a board's optimized kernels (CMSIS-NN on
# Cortex-M, ESP-NN, ...) ask the arena for scratch buffers the reference kernels do not need.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_MIN_BYTES = 1024


def arena_margin(arena_min_bytes: int) -> int:
    """The margin added to the smallest arena: 10% of it, at least 1 KiB, rounded up to 16 bytes."""
    margin = max(ARENA_MARGIN_MIN_BYTES, int(np.ceil(arena_min_bytes * ARENA_MARGIN_FRACTION)))
    return -(-margin // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def available() -> bool:
    """Whether the ``tflite-micro`` package is installed (without importing it)."""
    return importlib.util.find_spec("tflite_micro") is not None


def _tflm() -> ModuleType:
    try:
        from tflite_micro import runtime as tflm_runtime
    except ImportError as exc:
        raise ModelLoadError(f"running a model on TensorFlow Lite Micro needs tflite-micro: {INSTALL_HINT}") from exc
    module: ModuleType = tflm_runtime
    return module


@contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
    """Collect what C++ code writes to file descriptor 2 (TFLM reports allocation failures
    there, not in its exception); yields a function returning the text. Not thread-safe: the
    process's stderr is redirected while it runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        text = ""
        try:
            yield lambda: text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")


def _interpreter(data: bytes, arena_bytes: int, name: str) -> Any:
    """A TFLM interpreter for ``data`` in an arena of ``arena_bytes``, having run once on zeros;
    ``ModelLoadError`` with TFLM's explanation if it cannot allocate or run."""
    if arena_bytes < MIN_ARENA_BYTES:
        raise ModelLoadError(f"{name}: a tensor arena of {arena_bytes:,} bytes is below TensorFlow Lite Micro's "
                             f"floor here ({MIN_ARENA_BYTES:,} bytes: it keeps its own allocator in the arena)")
    module = _tflm()
    with _stderr_captured() as captured:
        try:
            interpreter = module.Interpreter.from_bytes(data, arena_size=arena_bytes)
            details = interpreter.get_input_details(0)
            interpreter.set_input(np.zeros(tuple(details["shape"]), details["dtype"]), 0)
            interpreter.invoke()
            error = None
        except (RuntimeError, ValueError) as exc:
            error = exc
    log = " ".join(captured().split())
    if error is not None:
        raise ModelLoadError(
            f"{name}: TensorFlow Lite Micro cannot run it in a tensor arena of {arena_bytes:,} bytes: {error}"
            + (f" ({log[:400]})" if log else "")
        ) from error
    return interpreter


def smallest_arena(data: bytes, name: str = "model") -> int:
    """The smallest tensor arena, in bytes (a multiple of 16, at least ``MIN_ARENA_BYTES``), that
    TFLM builds and runs ``data`` in.

    Found by bisection over arena sizes, each tried by building the interpreter
    and running it once (about 20 tries, ~0.3 s for the seed's int8 file). TFLM
    plans every tensor at build time, so an arena that builds and runs once
    runs any input. Raises ``ModelLoadError`` if the file does not run on TFLM
    at all (an unsupported op) or needs more than ``MAX_ARENA_BYTES``.
    """
    checked_interpreter(data, name)
    return _search_arena(data, name)


def _search_arena(data: bytes, name: str) -> int:
    """``smallest_arena`` for bytes that already passed ``checked_interpreter``."""
    high = -(-max(MIN_ARENA_BYTES, len(data) // 4) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    while not _runs_in(data, high, name):
        if high >= MAX_ARENA_BYTES:
            _interpreter(data, MAX_ARENA_BYTES, name)  # raises, with TFLM's reason
        high = min(high * 2, MAX_ARENA_BYTES)
    low = MIN_ARENA_BYTES
    if _runs_in(data, low, name):
        return low
    while high - low > ARENA_ALIGNMENT:
        middle = (low + high) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        if _runs_in(data, middle, name):
            high = middle
        else:
            low = middle
    return high


def _runs_in(data: bytes, arena_bytes: int, name: str) -> bool:
    try:
        _interpreter(data, arena_bytes, name)
    except ModelLoadError:
        return False
    return True


class TFLMModel(RuntimeModel):
    """A ``.tflite`` model on TensorFlow Lite Micro's kernels; ``ops`` lists its builtin ops."""

    format = "tflite"
    backend = TFLM

    def __init__(self, path: Path, data: bytes, entry: ArtifactEntry | None, arena_bytes: int | None = None) -> None:
        name = path.name
        checked = checked_interpreter(data, name)
        inputs = [int(i) for i in checked._interpreter.InputIndices()]
        outputs = [int(i) for i in checked._interpreter.OutputIndices()]
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(
                f"{name}: expected one input and at least one output, got {len(inputs)} and {len(outputs)}"
            )
        names = output_names(checked, outputs)
        # TFLM runs the batch the file was converted with (1 for the toolkit's files), never resizing
        input_spec = _at_batch_one(tensor_spec(tensor_details(checked, inputs[0], name)), name)
        output_specs = tuple(_at_batch_one(tensor_spec(tensor_details(checked, i, name), names.get(i)), name)
                             for i in outputs)
        self._ops_counted = dict(Counter(str(op["op_name"]) for op in op_details(checked, name)))
        super().__init__(path, input_spec, output_specs, 1, entry)
        if arena_bytes is None:
            mcu = entry.details.mcu if entry is not None else None
            arena_bytes = mcu.arena_bytes if mcu is not None else None
        if arena_bytes is None:
            minimum = _search_arena(data, name)  # the bytes were checked above
            arena_bytes = minimum + arena_margin(minimum)
        if isinstance(arena_bytes, bool) or not isinstance(arena_bytes, int):
            raise ValueError(f"arena_bytes must be an int, got {arena_bytes!r}")
        self._arena_bytes = arena_bytes
        self._interpreter = _interpreter(data, arena_bytes, name)
        self._lock = threading.Lock()

    @property
    def arena_bytes(self) -> int:
        """The tensor arena the interpreter was built in."""
        return self._arena_bytes

    def _run_impl(self, model_input: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            self._check_open()
            try:
                self._interpreter.set_input(model_input, 0)
                self._interpreter.invoke()
                return [np.array(self._interpreter.get_output(i)) for i in range(len(self.output_specs))]
            except (RuntimeError, ValueError) as exc:
                raise InferenceError(f"{self.path.name}: TensorFlow Lite Micro failed on input "
                                     f"{model_input.shape}: {exc}") from exc

    def _close_impl(self) -> None:
        with self._lock:
            self._interpreter = None

    def _ops_impl(self) -> dict[str, int]:
        return dict(self._ops_counted)


def _at_batch_one(spec: Any, name: str) -> Any:
    if spec.shape and spec.shape[0] not in (-1, 1):
        raise ModelLoadError(f"{name}: TensorFlow Lite Micro runs one image at a time; the file's "
                             f"{spec.name!r} has batch {spec.shape[0]}")
    return replace(spec, shape=(1, *spec.shape[1:]))
