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
from typing import TYPE_CHECKING, Any

from export.layout import SWEEP_JSON, SWEEP_MD, SWEEP_PNG
from export.report.tables import markdown_table
from export.report.sweep_table import HEADER, SweepRow, machine_line, table_rows
from export.formats.registry import ALL, FORMATS, RECIPE_FORMATS, Format, parse_formats
from export.formats.precision import Recipe
from export.errors import ExportError
from runtime.artifacts.manifest import contained
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.bench.latency import BenchSettings, bench_model
from runtime.errors import EdgeRuntimeError
from runtime.machine import cpu_info

if TYPE_CHECKING:
    from cllnn_edge.config import Config
    from cllnn_edge.data import Splits
    from export.graph.reference import KerasRunner

Progress = Callable[[str], None]
BENCH_RUNS = 100  # timed calls per variant at batch 1: p50 settles well before, and the sweep stays short
BENCH_WARMUP = 10
FLOAT32_REFERENCE = "tflite-fp32"  # sizes are given as a share of this file

# --variants syntax: variants separated by ",", a recipe after ":", its stage assignments joined
# by ";" or "+" (the recipe's own "," would split the list; "+" needs no shell quoting).
VARIANT_SEP, RECIPE_SEP, STAGE_SEPS = ",", ":", (";", "+")
VARIANTS_HELP = (
    "comma-separated variants: a format name, 'all' (the fixed-precision formats), or a recipe "
    "format with its recipe after ':', stages joined by ';' or '+', e.g. "
    "'tflite-fp32,tflite-mixed:cnn=float32+reservoir=int16x8' (unnamed stages are int8)"
)
DEFAULT_RECIPES = (  # the mixes benchmarks/PRECISION.md found closest to the trained model, and a float CNN
    ("tflite-mixed", "cnn=int16x8,reservoir=int16x8,lstm=int16x8,head=int16x8"),  # i16-i16-i16-i16, one matrix
    ("tflite-mixed", "cnn=int16x8,reservoir=int16x8"),  # i16-i16-i8-i8, the [export] recipe default
    ("tflite-mixed", "cnn=float32"),  # f32-i8-i8-i8
    ("onnx-mixed", "cnn=int16x8,reservoir=int16x8"),
)


def default_variants() -> tuple[Format, ...]:
    """The fixed-precision formats and a few per-stage mixes (the reservoir, the CNN kept finer)."""
    mixes = tuple(FORMATS[name].with_recipe(Recipe.parse(spec), variant=True) for name, spec in DEFAULT_RECIPES)
    return parse_formats(ALL) + mixes


def parse_variants(spec: str | None) -> tuple[Format, ...]:
    """``--variants`` -> formats, duplicates dropped, in order; None: ``default_variants()``.
    Raises ``ExportError`` naming the bad item before any work."""
    if spec is None:
        return default_variants()
    chosen: dict[str, Format] = {}
    for item in (part.strip() for part in spec.split(VARIANT_SEP)):
        if not item:
            continue
        for fmt in _variant(item):
            chosen.setdefault(fmt.name, fmt)
    if not chosen:
        raise ExportError(f"--variants names no variant: {spec!r}; {VARIANTS_HELP}")
    return tuple(chosen.values())


def _variant(item: str) -> tuple[Format, ...]:
    name, sep, recipe = (part.strip() for part in item.partition(RECIPE_SEP))
    if name == ALL and not sep:
        return parse_formats(ALL)
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r} in --variants item {item!r}; choose from "
                          f"{', '.join(FORMATS)} (or '{ALL}')")
    fmt = FORMATS[name]
    if not fmt.takes_recipe:
        if sep:
            raise ExportError(f"{name} has a fixed precision and takes no recipe (got {item!r}); "
                              f"recipes apply to {', '.join(RECIPE_FORMATS)}")
        return (fmt,)
    if not recipe:
        raise ExportError(f"{name} needs a recipe: {name}{RECIPE_SEP}reservoir=int16x8 (got {item!r})")
    for stage_sep in STAGE_SEPS:
        recipe = recipe.replace(stage_sep, ",")
    return (fmt.with_recipe(Recipe.parse(recipe), variant=True),)


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

    points = [(1.0 - r.top1_agreement, r.p50_us, r.size_kib) if r.measured else None for r in rows]
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
    from cllnn_edge.model import load_trained
    from cllnn_edge.sources import splits_for
    from export.pipeline.convert import convert, training_source
    from export.checks.parity import run_parity
    from export.graph.reference import trained_reference

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
    report = convert(model_path, out_dir, cfg, splits=splits, reference=reference, progress=progress,
                     formats=variants)
    parity = run_parity(model_path, out_dir, data=data, splits=splits, reference=reference,
                        tolerances=cfg.tolerances, progress=progress)
    timings = _bench_all(report.manifest, out_dir, runs, progress)
    rows = with_front(_rows(variants, report, parity, timings))
    cpu = cpu_info()
    result = SweepResult(out_dir=out_dir, rows=tuple(rows),
                         machine={**cpu.record(), "isa_line": cpu.isa_line},
                         command=command or _command(model_path, out_dir), seconds=time.perf_counter() - started,
                         runs=runs)
    write_sweep(result)
    return result


def _bench_all(manifest: Any, out_dir: Path, runs: int, progress: Progress) -> dict[str, tuple[float, float]]:
    """p50 / p99 (us) of each file the manifest lists, batch 1, one thread, in this process."""

    settings = BenchSettings(batch=1, threads=1, warmup=BENCH_WARMUP, runs=runs)
    timings = {}
    for index, entry in enumerate(manifest.artifacts, start=1):
        head = f"[{index}/{len(manifest.artifacts)}] {entry.format:<26} bench"
        try:
            result = bench_model(contained(out_dir, entry.file), settings)
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
            accuracy_drop_pt=(0.0 - 100 * metrics["accuracy_delta"]) if "accuracy_delta" in metrics else None,
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
    from export.report.plots import pareto_plot

    write_json_atomic(result.out_dir / SWEEP_JSON, result.to_dict())
    write_bytes_atomic(result.out_dir / SWEEP_MD, markdown(result).encode())
    pareto_plot([asdict(r) for r in result.rows if r.measured], machine_line(result.machine),
                result.out_dir / SWEEP_PNG)
