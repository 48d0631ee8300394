"""``cllnn-export sweep``: many precision variants of one model, measured side by side.

The question a precision policy answers is which stages to keep above int8
for how much latency and size; this module measures the answer instead of
guessing it. Each variant (a registry format, or a recipe format built from a
per-stage recipe, ``export.formats.precision.Recipe``) is converted into one artefacts
directory by one ``convert`` call (one manifest and check set, so ``cllnn-bench
select DIR`` reads it as any other), checked by one ``run_parity`` on the test
split, and timed at batch 1 on one thread, in one process on one machine: the
figures compare as ratios. A variant that fails to convert or fails parity is
a result, shown with its reason, not an error.

Written beside the files, atomically: ``sweep.json`` (one row per variant,
the CPU class and the command), ``sweep.md`` (the table sorted by p50, the
Pareto front marked) and ``sweep.png`` (top-1 disagreement against p50,
marker area = size, the front connected).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cllnn_edge.config import Config
from cllnn_edge.data import Splits
from cllnn_edge.model import load_trained
from cllnn_edge.sources import splits_for
from export.checks.parity import run_parity
from export.graph.reference import KerasRunner, trained_reference
from export.layout import SWEEP_JSON, SWEEP_MD, SWEEP_PNG
from runtime.tables import markdown_table
from export.report.sweep_table import HEADER, SweepRow, table_rows
from export.errors import ExportError
from export.formats.registry import Format
from export.pipeline.convert import ConvertJob, Opened, convert, training_source
from export.pipeline.variants import BENCH_RUNS, default_variants
from export.report.plots import pareto_plot
from runtime.artifacts.opened import Artifacts
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.bench.latency import BenchSettings, bench_model
from runtime.checks.metrics import accuracy_drop, disagreement
from runtime.errors import EdgeRuntimeError
from runtime.machine import cpu_info, machine_line

Progress = Callable[[str], None]
BENCH_WARMUP = 10
FLOAT32_REFERENCE = "tflite-fp32"  # sizes are given as a share of this file

def pareto_front(points: Sequence[Sequence[float] | None]) -> list[bool]:
    """For each point (lower is better on every axis; None: not measured), whether no other point
    is at least as good on every axis and better on one. Equal points are all on the front."""

    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [p is not None and not any(q is not None and dominates(q, p) for q in points) for p in points]


def with_front(rows: Sequence[SweepRow]) -> list[SweepRow]:
    """``rows`` with ``on_pareto_front`` set over disagreement (1 - top-1 agreement), p50 and size
    (measured rows only). Disagreement, not accuracy drop: on the demo model a variant whose rounding
    flipped 3 of 1,000 boundary images the right way "gained" 0.3 points and took a place on the
    front by chance; disagreement with the trained model cannot go below zero."""

    points = [(disagreement(r.top1_agreement), r.p50_us, r.size_kib) if r.measured else None for r in rows]
    return [replace(r, on_pareto_front=front) for r, front in zip(rows, pareto_front(points))]


@dataclass(frozen=True)
class SweepResult:
    """The sweep's rows and where it wrote them."""

    out_dir: Path
    rows: tuple[SweepRow, ...]
    machine: dict[str, Any]
    command: str
    seconds: float
    runs: int = BENCH_RUNS  # timed calls per file

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "machine": self.machine, "seconds": round(self.seconds, 1),
                "bench": {"batch": 1, "threads": 1, "warmup": BENCH_WARMUP, "runs": self.runs},
                "variants": [asdict(r) for r in self.rows]}


def sweep(
    model_path: str | Path,
    out_dir: str | Path,
    cfg: Config,
    *,
    variants: tuple[Format, ...] | None = None,
    data: str | None = None,
    splits: Splits | None = None,
    reference: KerasRunner | None = None,
    runs: int = BENCH_RUNS,
    command: str | None = None,
    progress: Progress = lambda line: None,
) -> SweepResult:
    """Convert, check and time every variant of ``model_path`` into ``out_dir``; write the sweep files.
    ``splits`` and ``reference`` (else loaded from ``data`` and the model file): as for ``convert``."""
    started = time.perf_counter()
    variants = default_variants() if variants is None else variants
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise ExportError(f"model file not found: {model_path}")
    if runs < 1:
        raise ExportError(f"--runs must be >= 1, got {runs}")
    data = data or training_source(model_path)
    splits = splits_for(cfg, data) if splits is None else splits
    reference = trained_reference(load_trained(model_path)) if reference is None else reference
    progress(f"sweep: {len(variants)} variants: {', '.join(f.name for f in variants)}")
    report = convert(ConvertJob.from_config(model_path, out_dir, cfg, formats=variants, opened=Opened(reference, splits)),
                     progress)
    artifacts = Artifacts.written(out_dir, report.manifest)  # convert's manifest, passed on, not read again
    parity = run_parity(model_path, artifacts, data=data, splits=splits, reference=reference,
                        tolerances=cfg.tolerances, progress=progress)
    timings = _bench_all(artifacts, runs, progress)
    rows = with_front(_rows(variants, report, parity, timings))
    cpu = cpu_info()
    result = SweepResult(out_dir=out_dir, rows=tuple(rows),
                         machine={**cpu.record(), "isa_line": cpu.isa_line},
                         command=command or _command(model_path, out_dir), seconds=time.perf_counter() - started,
                         runs=runs)
    write_sweep(result)
    return result


def _bench_all(artifacts: Artifacts, runs: int, progress: Progress) -> dict[str, tuple[float, float]]:
    """p50 / p99 (us) of each file the manifest lists, batch 1, one thread, in this process."""
    manifest = artifacts.manifest
    settings = BenchSettings(batch=1, threads=1, warmup=BENCH_WARMUP, runs=runs)
    timings = {}
    for index, entry in enumerate(manifest.artifacts, start=1):
        head = f"[{index}/{len(manifest.artifacts)}] {entry.format:<26} bench"
        try:
            result = bench_model(artifacts.file(entry.file), settings)
        except EdgeRuntimeError as exc:  # a file the runtime refuses is a result too
            progress(f"{head} FAILED: {exc}")
            continue
        timings[entry.format] = (result.p50_us, result.p99_us)
        progress(f"{head} {runs} runs: p50 {result.p50_us:,.0f} us, p99 {result.p99_us:,.0f} us")
    return timings


def _rows(variants: tuple[Format, ...], report: Any, parity: Any,
          timings: dict[str, tuple[float, float]]) -> list[SweepRow]:
    entries = {e.format: e for e in report.manifest.artifacts}
    failed = report.manifest.metadata.failed or {}
    results = {r.format: r for r in parity.results}
    fp32 = entries.get(FLOAT32_REFERENCE)
    rows = []
    for fmt in variants:
        recipe = fmt.recipe.to_dict() if fmt.recipe is not None else None
        entry = entries.get(fmt.name)
        if entry is None:
            rows.append(SweepRow(fmt.name, fmt.file, fmt.runtime, fmt.precision, recipe, None, None, None,
                                 None, None, None, None, False, None, None,
                                 error=f"conversion failed: {failed.get(fmt.name, 'no file')}"))
            continue
        quantization = entry.details.quantization
        result = results.get(fmt.name)
        metrics = result.metrics if result is not None else {}
        stage = result.error_entry if result is not None else None
        broken = [c.name for c in result.checks if not c.passed] if result is not None else ["not checked"]
        unfit = [name for name, check in entry.details.checks.items() if not check.passed]  # e.g. fits_budget
        problems = []
        if broken:
            problems.append(f"parity: {', '.join(broken)} broken")
        if unfit:
            problems.append(f"export: {', '.join(unfit)} failed")
        p50, p99 = timings.get(fmt.name, (None, None))
        rows.append(SweepRow(
            name=fmt.name, file=entry.file, runtime=entry.runtime, precision=entry.precision,
            recipe=quantization.get("recipe", {}).get("stages", recipe), calibration=quantization.get("calibration"),
            size_kib=round(entry.size / 1024, 1),
            size_pct_fp32=round(100 * entry.size / fp32.size, 1) if fp32 is not None else None,
            top1_agreement=metrics.get("top1_agreement"),
            accuracy_drop_pt=100 * accuracy_drop(metrics) if "accuracy" in metrics else None,
            max_abs=metrics.get("max_abs"), main_error_stage=stage.stage if stage is not None else None,
            parity_passed=bool(result is not None and result.passed), p50_us=p50, p99_us=p99,
            error="; ".join(problems) or None,
        ))
    return rows


def _command(model_path: Path, out_dir: Path) -> str:
    """The command line that reproduces the sweep (this process's, for the CLI)."""
    return shlex.join(["cllnn-export", "sweep", str(model_path), "--out", str(out_dir)])


# ---- the files -------------------------------------------------------------------------------


def markdown(result: SweepResult) -> str:

    return "\n".join([
        "# Precision sweep", "",
        f"{machine_line(result.machine)}. Batch 1, one thread, {result.runs} timed calls per file, "
        f"in one process; parity on the test split against the trained model. "
        f"`*`: on the Pareto front (no other variant as good on top-1 disagreement with the trained "
        f"model, p50 and size, and better on one). Sorted by p50. Sweep wall time {result.seconds:.0f} s.", "",
        markdown_table(HEADER, table_rows(result.rows)), "",
        f"![accuracy drop vs p50]({SWEEP_PNG})", "",
        "Reproduce:", "", "```bash", result.command, "```", "",
    ])


def write_sweep(result: SweepResult) -> None:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` into the sweep directory, each atomically."""
    write_json_atomic(result.out_dir / SWEEP_JSON, result.to_dict())
    write_bytes_atomic(result.out_dir / SWEEP_MD, markdown(result).encode())
    pareto_plot([asdict(r) for r in result.rows if r.measured], machine_line(result.machine),
                result.out_dir / SWEEP_PNG)
