"""``RuntimeModel``: one loaded model file behind the public API every backend shares.

The base class owns the public methods and every check (Polygraphy's runner
pattern); a backend overrides only the small ``_*_impl`` hooks. Which backend
loads a file is ``runtime.loader``'s choice.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np

from runtime.errors import InferenceError, ModelClosedError, ModelLoadError
from runtime.backends.images import as_image_batch, decode, dequantize, encode
from runtime.artifacts.manifest import ArtifactEntry, TensorSpec


class RuntimeModel(ABC):
    """One loaded model file; safe to share between threads.

    Subclasses set ``format`` and ``backend`` and implement ``_run_impl``
    (a batch in the model's input dtype -> the raw output tensors, in the
    order of ``output_specs``), ``_close_impl`` and ``_ops_impl``.

    A file usually has one output (class probabilities), which ``predict``
    reads. A file with several outputs (e.g. the stage probes ``export``
    writes under ``probes/``) loads too; read it with ``predict_outputs``.
    ``predict`` refuses it, so a probe can never pass for a classifier.
    """

    format: ClassVar[str]  # "tflite" or "onnx"
    backend: ClassVar[str]  # one of runtime.artifacts.manifest_schema.BACKENDS, as the manifest's ``runtime`` field

    def __init__(
        self,
        path: Path,
        input_spec: TensorSpec,
        output_specs: tuple[TensorSpec, ...],
        threads: int | None,
        manifest_entry: ArtifactEntry | None,
    ) -> None:
        self._path = path
        self._input_spec = input_spec
        self._output_specs = tuple(output_specs)
        self._output_spec = self._output_specs[-1]
        self._threads = threads
        self._manifest_entry = manifest_entry
        self._closed = False
        self._ops: dict[str, int] | None = None
        self._ops_lock = threading.Lock()
        _check_image_model(path, input_spec, self._output_specs)

    # -- metadata ---------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def input_spec(self) -> TensorSpec:
        """Name, shape (-1 = dynamic batch), dtype, and scale / zero point if quantized."""
        return self._input_spec

    @property
    def output_spec(self) -> TensorSpec:
        """The class-probability output: the only output, or the last one of a multi-output file."""
        return self._output_spec

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Every output; its name is the key ``predict_outputs`` returns it under (see each backend)."""
        return self._output_specs

    @property
    def threads(self) -> int | None:
        return self._threads

    @property
    def manifest_entry(self) -> ArtifactEntry | None:
        """The manifest entry the file was verified against, or None if there was no manifest."""
        return self._manifest_entry

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the images the file takes."""
        return (self._input_spec.shape[1], self._input_spec.shape[2])

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (RGB, channels last)."""
        return self._input_spec.shape[3]

    @property
    def num_classes(self) -> int:
        return self._output_spec.shape[-1]

    @property
    def ops(self) -> dict[str, int]:
        """Op type -> count, computed on first use (see each backend for what it covers)."""
        with self._ops_lock:
            if self._ops is None:
                self._check_open()
                self._ops = dict(sorted(self._ops_impl().items()))
            return dict(self._ops)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- inference ----------------------------------------------------------------
    def predict(self, images: object) -> np.ndarray:
        """Class probabilities, float32 (N, num_classes), whatever the model's precision.

        ``images``: uint8 (or float raw pixel values 0..255) shaped (H, W),
        (N, H, W) or (N, H, W, 1) for a grey model, (H, W, 3) or (N, H, W, 3) for
        an RGB one; anything else raises ``InputError``.
        A file with several outputs raises ``InferenceError`` (use ``predict_outputs``).
        """
        self._check_open()
        if len(self._output_specs) != 1:
            raise InferenceError(
                f"{self._path.name}: has {len(self._output_specs)} outputs, so it is not a classifier "
                f"predict() can run (a stage probe?); read every output with predict_outputs()"
            )
        (raw,) = self._run_batch(images)
        return decode(raw, self._output_spec)

    def predict_outputs(self, images: object) -> dict[str, np.ndarray]:
        """Every output as float32, by name (``output_specs``' names), for the same ``images`` as
        ``predict``.

        Each integer output is dequantized with its own scale and zero point,
        ``real = scale * (q - zero_point)``, and NOT renormalised (so for a
        one-output file the result can differ from ``predict`` by rounding
        of an int8 softmax). Meant for comparing intermediate tensors.
        """
        self._check_open()
        raws = self._run_batch(images)
        return {spec.name: dequantize(raw, spec) for raw, spec in zip(raws, self._output_specs)}

    def _run_batch(self, images: object) -> list[np.ndarray]:
        batch = as_image_batch(images, *self.image_shape, self.channels)
        model_input = encode(batch, self._input_spec)
        fixed = self._input_spec.shape[0]
        if fixed > 0 and len(model_input) != fixed:
            return self._run_in_chunks(model_input, fixed)
        return self._run_checked(model_input)

    def _run_in_chunks(self, model_input: np.ndarray, size: int) -> list[np.ndarray]:
        """A file exported with a fixed batch still takes any N: run it ``size`` at a time."""
        parts = []
        for start in range(0, len(model_input), size):
            chunk = model_input[start : start + size]
            n = len(chunk)
            if n < size:
                pad = np.zeros((size - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append([raw[:n] for raw in self._run_checked(chunk)])
        return [np.concatenate(outputs) for outputs in zip(*parts)]

    def _run_checked(self, model_input: np.ndarray) -> list[np.ndarray]:
        raws = list(self._run_impl(model_input))
        if len(raws) != len(self._output_specs):
            raise InferenceError(
                f"{self._path.name}: expected {len(self._output_specs)} outputs, got {len(raws)}"
            )
        for raw, spec in zip(raws, self._output_specs):
            expected = (len(model_input), *spec.shape[1:])
            if raw.shape != expected:
                raise InferenceError(
                    f"{self._path.name}: expected an output of shape {expected}, got {raw.shape}"
                    + (f" (output {spec.name!r})" if len(raws) > 1 else "")
                )
        return raws

    # -- lifetime -----------------------------------------------------------------
    def close(self) -> None:
        """Release the backend; further calls raise ``ModelClosedError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close_impl()

    def __enter__(self) -> RuntimeModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"{type(self).__name__}({str(self._path)!r}, input={self._input_spec.dtype}"
            f"{list(self._input_spec.shape)}, output={self._output_spec.dtype}"
            f"{list(self._output_spec.shape)}, {state})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ModelClosedError(f"{self._path.name}: model is closed; load it again to use it")

    # -- backend hooks --------------------------------------------------------------
    @abstractmethod
    def _run_impl(self, model_input: np.ndarray) -> list[np.ndarray]:
        """Run one batch already in the input's dtype; return the raw output tensors, in order."""

    @abstractmethod
    def _close_impl(self) -> None:
        """Drop the backend's session / interpreters."""

    @abstractmethod
    def _ops_impl(self) -> dict[str, int]:
        """Count the model's ops by type."""


def _check_image_model(path: Path, input_spec: TensorSpec, output_specs: tuple[TensorSpec, ...]) -> None:
    """The runtime's contract: (batch, H, W, C) images in, C = 1 (grey) or 3 (RGB); one
    (batch, classes) output, or several batch-first outputs (a probe file, read with
    ``predict_outputs``)."""
    shape = input_spec.shape
    if len(shape) != 4 or shape[3] not in (1, 3) or shape[1] <= 0 or shape[2] <= 0 or shape[0] == 0:
        raise ModelLoadError(
            f"{path.name}: expected one image input shaped (batch, H, W, 1) or (batch, H, W, 3), got "
            f"{input_spec.name!r} shaped {shape}"
        )
    if not output_specs:
        raise ModelLoadError(f"{path.name}: expected at least one output, got none")
    names = [spec.name for spec in output_specs]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{path.name}: expected outputs with distinct names, got {names}")
    if len(output_specs) == 1:
        (output_spec,) = output_specs
        if len(output_spec.shape) != 2 or output_spec.shape[1] <= 0:
            raise ModelLoadError(
                f"{path.name}: expected one output shaped (batch, classes), got {output_spec.name!r} "
                f"shaped {output_spec.shape}"
            )
    for spec in output_specs:
        if len(spec.shape) < 2 or any(d <= 0 for d in spec.shape[1:]) or spec.shape[0] == 0:
            raise ModelLoadError(
                f"{path.name}: expected every output shaped (batch, ...) with fixed feature axes, "
                f"got {spec.name!r} shaped {spec.shape}"
            )
    for role, spec in (("input", input_spec), *(("output", s) for s in output_specs)):
        dtype = np.dtype(spec.dtype)
        if not (np.issubdtype(dtype, np.floating) or dtype in (np.uint8, np.int8, np.int16)):
            raise ModelLoadError(
                f"{path.name}: expected a float, uint8, int8 or int16 {role}, got {spec.dtype}"
            )
