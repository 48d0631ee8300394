"""Run one conversion in its own process, so a converter crash becomes an error.

The TFLite converter has segfaulted on int8 configurations of this model; in
the exporting process that would kill every other format with it. Each
conversion runs as ``python -m export.worker JOB`` instead; a non-zero exit or
a signal turns into a ``ConversionError`` naming the format and the cause.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from export.errors import ConversionError

DEFAULT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Job:
    """What a worker needs; plain paths and values so it crosses a process boundary."""

    format: str
    out: str
    saved_model: str | None = None
    calibration: str | None = None  # .npy of uint8 images (N, 28, 28)
    float_onnx: str | None = None
    opset: int = 18
    per_channel: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


def run_isolated(
    job: Job, *, timeout: float = DEFAULT_TIMEOUT_S, python: str = sys.executable
) -> None:
    """Run ``job`` in a fresh ``python`` process; raise ConversionError if it does not succeed."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        done = subprocess.run(
            [python, "-m", "export.worker", job.to_json()],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{job.format}: converter timed out after {timeout:.0f} s") from exc
    if done.returncode == 0 and Path(job.out).exists():
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        cause = f"converter crashed ({name})"
    else:
        cause = _last_error_line(done.stderr) or f"worker exited with code {done.returncode}"
    raise ConversionError(f"{job.format}: {cause}")


def _last_error_line(stderr: str) -> str:
    """The worker prints its error last; skip the TensorFlow log chatter above it."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    marked = [line for line in lines if line.startswith("error: ")]
    if marked:
        return marked[-1][len("error: ") :]
    return lines[-1] if lines else ""
