"""Entry point of a conversion worker process: ``python -m export.worker JOB_JSON``.

Exit 0 with the output file written, or print ``error: ...`` last and exit 1.
"""

from __future__ import annotations

import sys
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
    calibration = np.load(job.calibration) if job.calibration else None
    out = Path(job.out)
    if job.format in TFLITE_PRECISION:
        from export.tflite import to_tflite

        to_tflite(Path(job.saved_model), TFLITE_PRECISION[job.format], calibration, out)
    elif job.format == "onnx-fp32":
        from export.onnx import to_onnx_float

        to_onnx_float(Path(job.saved_model), out, job.opset)
    elif job.format == "onnx-int8":
        from export.onnx import to_onnx_int8

        to_onnx_int8(Path(job.float_onnx), calibration, out, per_channel=job.per_channel)
    else:
        raise ValueError(f"unknown format {job.format!r}")


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
