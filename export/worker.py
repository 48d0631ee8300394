"""Entry point of a conversion worker process: ``python -m export.worker JOB_JSON``.

Exit 0 with the output file written, or print ``error: ...`` last and exit 1.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

import numpy as np

from export.isolate import Job

TFLITE_PRECISION = {
    "tflite-fp32": "float32",
    "tflite-fp16": "float16",
    "tflite-dynamic": "dynamic-int8",
    "tflite-int8": "int8",
}


def run(job: Job) -> None:
    """Convert the main graph into ``job.out``; then, if asked, the probe graph into ``job.probe_out``.

    Each file is written beside its target and renamed into place, so a file
    that exists is whole. A failed probe is written to ``job.probe_error_file``
    and does not fail the job.
    """
    calibration = np.load(job.calibration) if job.calibration else None
    if job.probe_out is None:
        _convert(job.format, job.saved_model, job.float_onnx, Path(job.out), job, calibration)
        return

    def probe() -> None:
        try:
            _convert(job.format, job.probe_saved_model, job.probe_float_onnx, Path(str(job.probe_out)),
                     job, calibration)
        except Exception as exc:  # the probe is a diagnostic: its failure is reported, not fatal
            traceback.print_exc()
            assert job.probe_error_file is not None
            job.probe_error_file.write_text(f"{type(exc).__name__}: {exc}".splitlines()[0])

    if job.format == "onnx-fp32":
        # tf2onnx runs as its own process: convert the probe alongside rather than after.
        alongside = threading.Thread(target=probe, name="probe")
        alongside.start()
        try:
            _convert(job.format, job.saved_model, job.float_onnx, Path(job.out), job, calibration)
        finally:
            alongside.join()
    else:
        _convert(job.format, job.saved_model, job.float_onnx, Path(job.out), job, calibration)
        probe()


def _convert(
    fmt: str, saved_model: str | None, float_onnx: str | None, out: Path, job: Job,
    calibration: np.ndarray | None,
) -> None:
    partial = out.with_name(out.name + ".partial")
    if fmt in TFLITE_PRECISION:
        from export.tflite import to_tflite

        to_tflite(Path(str(saved_model)), TFLITE_PRECISION[fmt], calibration, partial)
    elif fmt == "onnx-fp32":
        from export.onnx import to_onnx_float

        to_onnx_float(Path(str(saved_model)), partial, job.opset)
    elif fmt == "onnx-int8":
        from export.onnx import to_onnx_int8

        if calibration is None:
            raise ValueError("onnx-int8 needs calibration images")
        to_onnx_int8(Path(str(float_onnx)), calibration, partial, per_channel=job.per_channel)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    partial.replace(out)


def main(argv: list[str]) -> int:
    try:
        run(Job.from_json(argv[1]))
    except Exception as exc:  # the process boundary: report any failure as one line
        traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
