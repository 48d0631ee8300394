"""One loaded model shared by 8 threads: every result equals the single-threaded one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import runtime
from tests.runtime.conftest import TinyModels

THREADS = 8
CALLS = 200


@pytest.mark.parametrize(
    "name", ["fp32_tflite", "int8_tflite", "fp32_onnx", "int8_onnx", "fixed_batch_tflite"]
)
def test_eight_threads_share_one_model(tiny: TinyModels, name: str) -> None:
    # Different batch sizes, so interpreters are resized while other threads run.
    inputs = [tiny.images[i : i + size] for i, size in enumerate((1, 3, 1, 5, 2, 1, 4, 3))]
    with runtime.load(tiny.all()[name]) as model:
        expected = [model.predict(batch) for batch in inputs]
        start = threading.Barrier(THREADS)

        def worker(thread: int) -> int:
            start.wait()
            mismatches = 0
            for call in range(CALLS):
                k = (thread + call) % len(inputs)
                if not np.array_equal(model.predict(inputs[k]), expected[k]):
                    mismatches += 1
            return mismatches

        with ThreadPoolExecutor(THREADS) as pool:
            mismatches = list(pool.map(worker, range(THREADS)))
    assert mismatches == [0] * THREADS


def test_close_while_threads_run(tiny: TinyModels) -> None:
    model = runtime.load(tiny.fp32_tflite)
    errors: list[BaseException] = []
    running = threading.Event()

    def worker() -> None:
        try:
            while True:
                model.predict(tiny.images[:2])
                running.set()
        except runtime.ModelClosedError:
            return
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert running.wait(timeout=30)
    model.close()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
