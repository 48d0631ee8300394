"""A corpus of mutated model files, each loaded and run where a native crash cannot take the run down.

Every file of the six formats (TFLite float32 / float16 / dynamic-range / int8, ONNX float32 /
int8) is mutated six ways (``MUTATIONS``) from one fixed seed. A worker process
(``tests.runtime.fuzz_worker``) loads each mutated file with ``runtime.load(path, manifest=None)``
and runs one image; if the worker dies on a file (a signal) or stops making progress, that file is
recorded as a crash or a hang and a new worker carries on with the rest. Every outcome must be a
(1, 10) float32 result or one of the runtime's own error classes, with no crash and no hang.

``CLLNN_FUZZ=long`` makes ``LONG_PER_KIND`` files per format and kind instead of ``PER_KIND``.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.artifacts.manifest import MANIFEST_NAME
from tests.runtime.conftest import SEED, TinyModels, _keras_model
from tests.runtime.helpers import REPO

LONG = os.environ.get("CLLNN_FUZZ") == "long"
PER_KIND = 28  # 6 formats x 6 kinds x 28 = 1,008 files in CI
LONG_PER_KIND = 300  # 10,800 files
MIN_FILES = 1_000
HANG_SECONDS = 60.0  # no file loads for this long: the worker is stuck on one

# Every class a load or a predict may raise on purpose.
ERROR_CLASSES = {cls.__name__ for cls in vars(runtime.errors).values()
                 if isinstance(cls, type) and issubclass(cls, runtime.EdgeRuntimeError)}


@pytest.fixture(scope="module")
def originals(tiny: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The six formats' bytes: the tiny fixtures plus float16 and dynamic-range TFLite made the same way."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    model = _keras_model(keras)  # the tiny fixtures' weights (same seed)
    files = {}
    for name, options in {"tflite-fp16": [tf.float16], "tflite-dynamic": None}.items():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if options:
            converter.target_spec.supported_types = options
        files[name] = bytes(converter.convert())
    return {"tflite-fp32": tiny.fp32_tflite.read_bytes(), "tflite-fp16": files["tflite-fp16"],
            "tflite-dynamic": files["tflite-dynamic"], "tflite-int8": tiny.int8_tflite.read_bytes(),
            "onnx-fp32": tiny.fp32_onnx.read_bytes(), "onnx-int8": tiny.int8_onnx.read_bytes()}


# -- mutations: (rng, the file, another format's file) -> mutated bytes ---------------------------
def truncated(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def bit_flipped(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    buffer = bytearray(data)
    n = int(rng.choice([1, 2, 4, 8, 32, 256]))
    for position in rng.integers(0, len(buffer) * 8, size=n):
        buffer[position // 8] ^= 1 << (position % 8)
    return bytes(buffer)


def spliced(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    """A head of this file and a tail of another (another format, or itself shifted)."""
    cut = int(rng.integers(1, len(data)))
    donor = other if rng.random() < 0.5 else data
    return data[:cut] + donor[int(rng.integers(0, len(donor))):]


def random_bytes(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    return rng.bytes(int(rng.integers(0, 2 * len(data))))


def zero_filled(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        start = int(rng.integers(0, len(buffer)))
        length = int(rng.integers(1, max(2, len(buffer) // int(rng.choice([4, 64, 1024])))))
        buffer[start:start + length] = bytes(len(buffer[start:start + length]))
    return bytes(buffer)


def header_kept(rng: np.random.Generator, data: bytes, other: bytes) -> bytes:
    """The first 8..256 bytes kept (the TFL3 identifier, the ONNX header fields), the rest random."""
    keep = int(rng.integers(8, 257))
    return data[:keep] + rng.bytes(len(data) - keep)


MUTATIONS: dict[str, Callable[[np.random.Generator, bytes, bytes], bytes]] = {
    "truncated": truncated, "bit-flipped": bit_flipped, "spliced": spliced,
    "random": random_bytes, "zero-filled": zero_filled, "header-kept": header_kept,
}


def write_corpus(originals: dict[str, bytes], out: Path, per_kind: int) -> list[tuple[str, str, Path]]:
    """(format, kind, path) of ``per_kind`` mutations of each format by each kind, from ``SEED``."""
    rng = np.random.default_rng(SEED)
    formats = list(originals)
    corpus = []
    for i, fmt in enumerate(formats):
        other = originals[formats[(i + 3) % len(formats)]]  # tflite <-> onnx
        for kind, mutate in MUTATIONS.items():
            for n in range(per_kind):
                path = out / f"{fmt}.{kind}.{n}.{'onnx' if fmt.startswith('onnx') else 'tflite'}"
                path.write_bytes(mutate(rng, originals[fmt], other))
                corpus.append((fmt, kind, path))
    return corpus


WORKER = ["-m", "tests.runtime.fuzz_worker"]


def run_corpus(paths: list[Path], work: Path, image: np.ndarray, worker_args: list[str] = WORKER,
               hang_seconds: float = HANG_SECONDS) -> list[str]:
    """One outcome per path (see ``tests.runtime.fuzz_worker``), plus ``crash <returncode>`` / ``hang``."""
    (work / "list.txt").write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    np.save(work / "image.npy", image)
    results_file = work / "results.txt"
    results_file.write_text("", encoding="utf-8")
    outcomes: dict[int, str] = {}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    while len(outcomes) < len(paths):
        start = len(outcomes)  # the worker reports in order
        worker = subprocess.Popen(
            [sys.executable, *worker_args, str(work / "list.txt"), str(results_file),
             str(work / "image.npy"), "--start", str(start)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        seen, last_progress = start, time.monotonic()
        while worker.poll() is None and time.monotonic() - last_progress < hang_seconds:
            time.sleep(0.1)
            done = results_file.read_text(encoding="utf-8").count("\n")
            if done > seen:
                seen, last_progress = done, time.monotonic()
        hung = worker.poll() is None
        if hung:
            worker.kill()
        worker.wait()
        for line in results_file.read_text(encoding="utf-8").splitlines():
            index, outcome = line.split("\t", 1)
            outcomes[int(index)] = outcome
        if len(outcomes) < len(paths) and (hung or worker.returncode != 0):
            culprit = len(outcomes)
            outcomes[culprit] = "hang" if hung else f"crash {worker.returncode}"
            with open(results_file, "a", encoding="utf-8") as results:
                results.write(f"{culprit}\t{outcomes[culprit]}\n")
        elif len(outcomes) < len(paths):
            raise AssertionError(f"the worker exited 0 after {len(outcomes)} of {len(paths)} files")
    return [outcomes[i] for i in range(len(paths))]


def summary(corpus: list[tuple[str, str, Path]], outcomes: list[str]) -> str:
    by_format = collections.Counter(fmt for fmt, _, _ in corpus)
    by_kind = collections.Counter(kind for _, kind, _ in corpus)
    by_outcome = collections.Counter(outcome.split(":")[0] for outcome in outcomes)
    table = collections.defaultdict(collections.Counter)
    for (fmt, kind, _), outcome in zip(corpus, outcomes):
        table[f"{fmt} {kind}"][outcome.split(":")[0]] += 1
    lines = [f"{len(corpus)} mutated files", f"by format: {dict(by_format)}", f"by kind: {dict(by_kind)}",
             f"outcomes: {dict(by_outcome.most_common())}"]
    lines += [f"  {key}: {dict(counts.most_common())}" for key, counts in sorted(table.items())]
    return "\n".join(lines)


def test_mutated_files_load_or_fail_with_a_runtime_error(
    originals: dict[str, bytes], tiny: TinyModels, tmp_path: Path
) -> None:
    for fmt, data in originals.items():  # the unmutated files run: a failure below is the mutation's
        path = tmp_path / f"original.{'onnx' if fmt.startswith('onnx') else 'tflite'}"
        path.write_bytes(data)
        with runtime.load(path, manifest=None) as model:
            assert model.predict(tiny.images[:1]).shape == (1, 10), fmt
    (tmp_path / "corpus").mkdir()
    corpus = write_corpus(originals, tmp_path / "corpus", LONG_PER_KIND if LONG else PER_KIND)
    assert len(corpus) >= MIN_FILES
    started = time.monotonic()
    outcomes = run_corpus([path for _, _, path in corpus], tmp_path, tiny.images[:1])
    report = f"{summary(corpus, outcomes)}\nin {time.monotonic() - started:.1f} s"
    print(report)
    failures = [(path.name, outcome) for (_, _, path), outcome in zip(corpus, outcomes)
                if outcome not in ("ok", "ok-nonfinite") and outcome not in ERROR_CLASSES]
    assert not failures, f"{len(failures)} files crashed, hung or raised what they should not:\n" + "\n".join(
        f"  {name}: {outcome}" for name, outcome in failures[:50]) + f"\n{report}"


def test_with_a_manifest_every_mutation_is_refused_by_its_checksum(
    originals: dict[str, bytes], artifacts: Path
) -> None:
    """A manifest beside the files: each mutated file fails its SHA-256 before any backend sees it."""
    rng = np.random.default_rng(SEED + 1)
    names = {"tflite-fp32": "fp32.tflite", "tflite-int8": "int8.tflite", "onnx-fp32": "fp32.onnx",
             "onnx-int8": "int8.onnx"}
    assert (artifacts / MANIFEST_NAME).is_file()
    refused = 0
    for fmt, name in names.items():
        for kind, mutate in MUTATIONS.items():
            mutated = mutate(rng, originals[fmt], originals["onnx-fp32"])
            if mutated == originals[fmt]:
                continue
            (artifacts / name).write_bytes(mutated)
            with pytest.raises(runtime.ManifestError, match="does not match its manifest: SHA-256"):
                runtime.load(artifacts / name)
            refused += 1
        (artifacts / name).write_bytes(originals[fmt])
        with runtime.load(artifacts / name) as model:  # the manifest vouches for the original again
            assert model.manifest_entry is not None
    assert refused >= len(names) * len(MUTATIONS) - 2


# Stands in for a native library that aborts on one file and spins on another.
DYING_WORKER = """
import os, sys, time
paths = open(sys.argv[1]).read().splitlines()
with open(sys.argv[2], "a") as results:
    for index in range(int(sys.argv[5]), len(paths)):
        if "abort" in paths[index]:
            os.abort()
        if "spin" in paths[index]:
            time.sleep(600)
        results.write(f"{index}\\tok\\n")
        results.flush()
"""


def test_a_worker_that_dies_or_hangs_on_a_file_is_recorded_and_replaced(tmp_path: Path) -> None:
    """The harness itself: a crash (SIGABRT) and a hang each cost one file, and the rest still run."""
    names = ["a", "abort1", "b", "spin", "c", "abort2"]
    outcomes = run_corpus([tmp_path / name for name in names], tmp_path, np.zeros((1, 28, 28), np.uint8),
                          worker_args=["-c", DYING_WORKER], hang_seconds=1.0)
    assert outcomes == ["ok", "crash -6", "ok", "hang", "ok", "crash -6"]
