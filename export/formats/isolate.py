"""Run one conversion in its own process, so a converter crash becomes an error.

The TFLite converter has segfaulted on int8 configurations of this model; in
the exporting process that would kill every other format with it. Each
conversion runs as ``python -m export.formats.worker JOB`` instead; a non-zero exit or
a signal turns into a ``ConversionError`` naming the format and the cause. The
worker, and the tf2onnx process it may start, die with the process that started
them (``export.lifeline``): a killed export leaves no converter running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.errors import ConversionError
from export.formats.precision import MINMAX, Recipe, names_layer
from export.lifeline import child_env

DEFAULT_TIMEOUT_S = 900.0
# Dynamic-range dense layers with per-channel int8 weights are FULLY_CONNECTED version 12 (float32 in and
# out, int8 per-channel filter: LiteRT's op_version.cc); with per-tensor weights the op keeps an older
# version. A runtime that lacks this version gets per-tensor dense weights (``Conversion.per_channel_dense``).
PER_CHANNEL_DENSE_OP = ("FULLY_CONNECTED", 12)


@dataclass(frozen=True)
class Conversion:
    """The settings a converter reads (``export.formats.registry.Format.convert``), inside the worker."""

    calibration: np.ndarray | None  # uint8 images (N, H, W[, C]) for formats that calibrate
    opset: int
    per_channel: bool
    # Layers of the graph the int8 converters leave in float32 (export.graph.unroll's float front).
    float_layers: tuple[str, ...] = ()
    recipe: Recipe | None = None  # precision per stage, for the formats built from one
    calibration_method: str = MINMAX  # export.formats.precision.CALIBRATION_METHODS
    per_channel_dense: bool = True  # False: dynamic-range dense weights per tensor (PER_CHANNEL_DENSE_OP)

    def keeps_float(self, node: str) -> bool:
        """Whether a converted op or node belongs to one of ``float_layers`` (``export.formats.precision.names_layer``)."""
        return bool(self.float_layers) and names_layer(node, "|".join(map(re.escape, self.float_layers)))


@dataclass(frozen=True)
class Job:
    """What a worker needs; plain paths and values so it crosses a process boundary."""

    format: str  # a name of the format registry
    source: str  # the SavedModel to convert
    out: str
    calibration: str | None = None  # .npy of uint8 images (N, H, W[, C])
    calibration_images: int | None = None  # use the first N of them (None: all)
    calibration_method: str = MINMAX
    opset: int = 18
    per_channel: bool = True
    float_layers: tuple[str, ...] = ()
    recipe: tuple[str, ...] | None = None  # Recipe.precisions
    # The stage probe: the same conversion of the probe graph (``probe_source``) into
    # ``probe_out``, in the same process. Its failure leaves ``out`` standing and is
    # reported in ``JobResult.probe_error``.
    probe_source: str | None = None
    probe_out: str | None = None
    per_channel_dense: bool = True

    @property
    def probe_error_file(self) -> Path | None:
        """Where the worker writes why the probe conversion failed."""
        return None if self.probe_out is None else Path(self.probe_out + ".error")

    def conversion(self) -> Conversion:
        calibration = None if self.calibration is None else np.load(self.calibration)[: self.calibration_images]
        return Conversion(calibration=calibration, opset=self.opset, per_channel=self.per_channel,
                          float_layers=tuple(self.float_layers),
                          recipe=None if self.recipe is None else Recipe(tuple(self.recipe)),
                          calibration_method=self.calibration_method, per_channel_dense=self.per_channel_dense)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        if data.get("recipe") is not None:
            data["recipe"] = tuple(data["recipe"])
        return cls(**data)


@dataclass(frozen=True)
class JobResult:
    """A job whose main file was written; ``probe_error`` says why its probe was not (if asked for)."""

    probe_error: str | None = None


def run_isolated(
    job: Job, *, timeout: float = DEFAULT_TIMEOUT_S, python: str = sys.executable
) -> JobResult:
    """Run ``job`` in a fresh ``python`` process; raise ConversionError if its main file fails.

    The worker writes the main file whole (renamed into place) before it
    starts the probe, so a crash during the probe costs the probe only.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    env = child_env(env)  # the worker dies with this process (export.lifeline), even on kill -9
    try:
        done = subprocess.run(
            [python, "-m", "export.formats.worker", job.to_json()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{job.format}: converter timed out after {timeout:.0f} s") from exc
    if done.returncode < 0:
        cause = f"converter crashed ({signal.Signals(-done.returncode).name})"
    else:
        cause = _last_error_line(done.stderr) or f"worker exited with code {done.returncode}"
    if not Path(job.out).exists() or (done.returncode != 0 and job.probe_out is None):
        raise ConversionError(f"{job.format}: {cause}")
    if job.probe_out is None or (done.returncode == 0 and Path(job.probe_out).exists()):
        return JobResult()
    error_file = job.probe_error_file
    if done.returncode == 0 and error_file is not None and error_file.exists():
        cause = error_file.read_text().strip() or "probe conversion failed"
    elif done.returncode == 0:
        cause = "the worker wrote no probe file"
    return JobResult(probe_error=f"{job.format} probe: {cause}")


def _last_error_line(stderr: str) -> str:
    """The worker prints its error last; skip the TensorFlow log chatter above it."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    marked = [line for line in lines if line.startswith("error: ")]
    if marked:
        return marked[-1][len("error: ") :]
    return lines[-1] if lines else ""
