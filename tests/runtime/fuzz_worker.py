"""Child process of the mutated-file corpus (``test_fuzz_files``): load each file, run one image, report.

``python -m tests.runtime.fuzz_worker LIST RESULTS IMAGE``: LIST has one model path a line; for
each, a line ``<index>\\t<outcome>`` is appended to RESULTS and flushed before the next file, so
a native crash (a signal) loses nothing already reported and the parent knows which file killed
the worker. Outcomes: ``ok`` (float32 (1, 10)), ``ok-nonfinite`` (the same with NaN or inf: a
flipped weight bit), ``bad-result <shape> <dtype>``, a ``runtime.EdgeRuntimeError`` subclass's
name, or ``unexpected <ExceptionClass>: <message>``. The first argument after the image may be
``--start N`` to resume after a crash.
"""

from __future__ import annotations

import sys

import numpy as np

import runtime


def outcome(path: str, image: np.ndarray) -> str:
    try:
        with runtime.load(path, manifest=None) as model:
            result = model.predict(image)
    except runtime.EdgeRuntimeError as exc:
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - the point is to report what escaped
        return f"unexpected {type(exc).__name__}: {str(exc)[:200]!r}"
    if not isinstance(result, np.ndarray) or result.shape != (1, 10) or result.dtype != np.float32:
        return f"bad-result {getattr(result, 'shape', None)} {getattr(result, 'dtype', type(result).__name__)}"
    return "ok" if np.isfinite(result).all() else "ok-nonfinite"


def main(argv: list[str]) -> None:
    list_file, results_file, image_file = argv[:3]
    start = int(argv[4]) if len(argv) > 4 and argv[3] == "--start" else 0
    paths = open(list_file, encoding="utf-8").read().splitlines()
    image = np.load(image_file)
    with open(results_file, "a", encoding="utf-8") as results:
        for index in range(start, len(paths)):
            results.write(f"{index}\t{outcome(paths[index], image)}\n")
            results.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
