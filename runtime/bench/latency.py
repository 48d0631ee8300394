"""Latency benchmark through the device runtime; the command over it, ``cllnn-bench MODEL...``,
is ``runtime.cli.bench``.

Times ``model.predict(images)`` end to end, as an application calls it (input
checks, quantization, inference, dequantization), after a warm-up. Reports per
model: load time, p50 / p90 / p99 / mean latency in microseconds, throughput,
file size and the process's peak resident memory, under the CPU's int8 class;
writes JSON with the machine (CPU model, ISA features, class), library
versions and settings; with a baseline, fails when p50 regresses by more than
a given percentage. Imports only numpy and the runtime.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from runtime.atomic import write_json_atomic
from runtime.errors import EdgeRuntimeError
from runtime.loader import load
from runtime.machine import CpuInfo, cpu_info, machine_line
from runtime.tables import text_table
from runtime.artifacts.opened import ArtifactFile
from runtime.artifacts.signing import TrustedKeyLike

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class BenchSettings:
    batch: int = 1
    threads: int | None = 1
    warmup: int = 20
    runs: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch", "warmup", "runs"):
            value = getattr(self, name)
            if value < (0 if name == "warmup" else 1):
                raise ValueError(f"--{name} must be >= {0 if name == 'warmup' else 1}, got {value}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class BenchResult:
    """One model's figures; latencies in microseconds per call of ``batch`` images."""

    model: str
    format: str
    file_size: int
    load_ms: float
    batch: int
    threads: int | None
    runs: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    throughput_ips: float  # images per second at the mean latency
    peak_rss_mib: float  # of the whole benchmarking process, so far
    samples_us: tuple[float, ...] = ()  # every timed call, in order (for distributions)
    export_format: str | None = None  # the file's format name in its manifest, where the caller knew it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.export_format is None:
            del data["export_format"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """The inverse of ``to_dict``; keys it does not know (a later layout's) are left out."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**{**known, "samples_us": tuple(known.get("samples_us", ()))})


@dataclass(frozen=True)
class BenchReport:
    """A benchmark's JSON (``cllnn-bench --json``, ``cllnn-export run``'s ``bench.json``): the machine and
    libraries it ran on, its settings, one result per file and batch size."""

    machine: dict[str, Any]
    versions: dict[str, str]
    settings: dict[str, Any]
    results: tuple[BenchResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "versions": self.versions, "settings": self.settings,
                "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        return cls(machine=dict(data.get("machine", {})), versions=dict(data.get("versions", {})),
                   settings=dict(data.get("settings", {})),
                   results=tuple(BenchResult.from_dict(r) for r in data["results"]))

    @classmethod
    def measured_here(cls, settings: dict[str, Any], results: Sequence[BenchResult]) -> BenchReport:
        """``results`` as measured on this machine (``environment``) with ``settings``."""
        env = environment()
        return cls(env["machine"], env["versions"], settings, tuple(results))

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> BenchReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def timings(self, batch: int, cpu: CpuInfo) -> dict[str, BenchResult]:
        """The results at ``batch`` by file name, if they were measured on a CPU like ``cpu`` (its model,
        ISA and class); else none: figures compare only on the machine they were measured on."""
        if {k: self.machine.get(k) for k in cpu.record()} != cpu.record():
            return {}
        return {Path(r.model).name: r for r in self.results if r.batch == batch}


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, interpolated linearly between the two closest
    ranks (numpy's default): the one definition of every p50 / p90 / p99 in the toolkit's and the
    benchmarks' figures. Of [1, 2, 3, 4]: p50 2.5, p99 3.97 (nearest-rank would say 2 and 4)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0 or not 0 <= q <= 100:
        raise ValueError(f"a percentile needs samples and 0 <= q <= 100; got {values.size} samples, q={q!r}")
    return float(np.percentile(values, q))


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    On Linux, VmHWM from /proc: getrusage's ru_maxrss survives fork + exec, so
    a small process started by a large one would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_model(
    path: str | Path | ArtifactFile,
    settings: BenchSettings = BenchSettings(),
    *,
    progress: Callable[[int, int], None] | None = None,
    trusted_key: TrustedKeyLike | None = None,
    backend: str | None = None,
) -> BenchResult:
    """Load ``path`` and time ``predict`` on random uint8 images of the set batch size.

    ``trusted_key``: load only if the manifest beside ``path`` is signed by it (``runtime.load``).
    ``path`` may be an ``ArtifactFile`` already checked against its manifest: it is loaded from those bytes.
    ``backend``: as ``runtime.load``'s (``"tflite-runtime"``: a LiteRT file on tflite-runtime).
    """
    started = time.perf_counter()
    model = load(path, threads=settings.threads, trusted_key=trusted_key, backend=backend)
    path, size = (path.path, path.size) if isinstance(path, ArtifactFile) else (Path(path), Path(path).stat().st_size)
    load_ms = (time.perf_counter() - started) * 1e3
    rng = np.random.default_rng(settings.seed)
    images = rng.integers(0, 256, (settings.batch, *model.image_shape, model.channels), dtype=np.uint8)
    with model:
        for _ in range(settings.warmup):
            model.predict(images)
        times = np.empty(settings.runs)
        for index in range(settings.runs):
            begin = time.perf_counter_ns()
            model.predict(images)
            times[index] = (time.perf_counter_ns() - begin) / 1e3
            if progress is not None:
                progress(index + 1, settings.runs)
        fmt = model.format
    mean = float(times.mean())
    return BenchResult(
        model=str(path),
        format=fmt,
        file_size=size,
        load_ms=load_ms,
        batch=settings.batch,
        threads=settings.threads,
        runs=settings.runs,
        p50_us=percentile(times, 50),
        p90_us=percentile(times, 90),
        p99_us=percentile(times, 99),
        mean_us=mean,
        throughput_ips=settings.batch / (mean / 1e6),
        peak_rss_mib=peak_rss_mib(),
        samples_us=tuple(round(float(t), 2) for t in times),
    )


def environment() -> dict[str, Any]:
    """Machine (with the CPU's model, ISA and int8 class) and library versions, for the JSON report."""
    versions = {}
    for name in ("numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            **cpu_info().record(),  # cpu (the model), cpu_arch, cpu_isa, cpu_class
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": versions,
    }


class BaselineError(EdgeRuntimeError, ValueError):
    """A ``--baseline`` file is unreadable or not a report an earlier ``--json`` run wrote."""


def load_baseline(path: str | Path) -> dict[str, float]:
    """The p50 (us) per model file name of a report an earlier ``--json`` run wrote, checked whole:
    a JSON object whose ``results`` is a list of objects, each with a ``model`` name and a positive,
    finite ``p50_us``. Read before anything is measured, so a bad baseline costs no benchmark."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BaselineError(f"--baseline {path}: cannot read it as JSON: {exc}") from exc
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise BaselineError(f"--baseline {path}: expected a JSON object with a 'results' list (as --json "
                            f"writes), got {type(document).__name__}"
                            + (" without a 'results' list" if isinstance(document, dict) else ""))
    p50s: dict[str, float] = {}
    for index, result in enumerate(results):
        where = f"--baseline {path}: results[{index}]"
        if not isinstance(result, dict):
            raise BaselineError(f"{where} must be an object, got {type(result).__name__}")
        model, p50 = result.get("model"), result.get("p50_us")
        if not isinstance(model, str) or not model:
            raise BaselineError(f"{where} needs 'model', the file's path, got {model!r}")
        if isinstance(p50, bool) or not isinstance(p50, (int, float)) or not math.isfinite(p50) or p50 <= 0:
            raise BaselineError(f"{where} ({model}) needs 'p50_us', a positive number of microseconds, got {p50!r}")
        p50s[Path(model).name] = float(p50)
    return p50s


def regressions(
    results: Sequence[BenchResult], baseline: dict[str, float], max_regression_pct: float
) -> list[str]:
    """Models whose p50 grew by more than ``max_regression_pct`` over the baseline's
    (``load_baseline``: p50 in us per model file name)."""
    failures = []
    for result in results:
        old = baseline.get(Path(result.model).name)
        if old is None:
            continue
        change = (result.p50_us / old - 1.0) * 100.0
        if change > max_regression_pct:
            failures.append(
                f"{Path(result.model).name}: p50 {result.p50_us:.0f} us vs baseline "
                f"{old:.0f} us (+{change:.1f}%, allowed +{max_regression_pct:g}%)"
            )
    return failures


def format_table(results: Sequence[BenchResult], cpu: CpuInfo | None = None) -> str:
    """The figures, one row per model, and under them the CPU they were measured on
    (``cpu``, default this machine's) with its class: figures compare within one class."""
    header = ("model", "size KiB", "load ms", "p50 us", "p90 us", "p99 us", "mean us", "img/s", "peak MiB")
    rows = [header] + [
        (
            Path(r.model).name,
            f"{r.file_size / 1024:.1f}",
            f"{r.load_ms:.1f}",
            f"{r.p50_us:.1f}",
            f"{r.p90_us:.1f}",
            f"{r.p99_us:.1f}",
            f"{r.mean_us:.1f}",
            f"{r.throughput_ips:.0f}",
            f"{r.peak_rss_mib:.1f}",
        )
        for r in results
    ]
    table = text_table(rows[0], rows[1:], right=range(1, len(header)))
    return "\n".join([table, machine_line(cpu)])
