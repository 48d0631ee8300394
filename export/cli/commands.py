"""The ``cllnn-export`` subcommands that do the work (train, shards, convert, parity, sweep, run):
each takes its resolved plan (``export.pipeline.plan``), calls one library function, prints what it
did and returns an exit code.

These load TensorFlow (they train, convert and check), so ``export.cli.main`` imports this module
only once a plan is made, with TensorFlow's start-up banners filtered; ``--help`` never loads it.
"""

from __future__ import annotations

import argparse
import shlex

from cllnn_edge.errors import ConfigError
from cllnn_edge.shard_writer import write_shards
from cllnn_edge.sources import data_for, splits_for
from cllnn_edge.train import train
from export.checks.parity import run_parity
from export.errors import EXIT_CHECK_FAILED, EXIT_OK
from export.pipeline.convert import ConvertJob, ConvertReport, convert
from export.pipeline.plan import Plan
from export.pipeline.run import run_pipeline
from export.pipeline.sweep import sweep
from export.report.sweep_table import HEADER, table_rows
from runtime.tables import text_table
from runtime.checks.metrics import accuracy_drop
from runtime.checks.parity import ParityReport
from runtime.machine import machine_line


def _print(line: str) -> None:
    print(line, flush=True)


def run_train(plan: Plan, args: argparse.Namespace) -> int:
    cfg = plan.config
    splits = data_for(cfg, plan.source)
    counts = splits.summary()
    _print(f"data: {plan.source}: train {counts['train']}, val {counts['val']}, test {counts['test']}")
    result = train(cfg, splits, plan.out, progress=_print, strategy=plan.training_strategy)
    final = result.history["final"]
    timing = result.history["timing"]
    print(
        f"val accuracy {final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}, "
        f"{timing['train_seconds']:.1f} s, median step {timing['median_step_ms']:.1f} ms"
    )
    worker = plan.strategy.worker_name if plan.strategy is not None else "this process"
    print(f"wrote {result.model_path}" if plan.is_chief else f"{worker}: done; the chief writes the files")
    return EXIT_OK


def run_shards(plan: Plan, args: argparse.Namespace) -> int:
    splits = splits_for(plan.config, plan.data)
    write_shards(splits, plan.out, per_shard=args.per_shard, progress=_print)
    return EXIT_OK


def run_convert(plan: Plan, args: argparse.Namespace) -> int:
    report = convert(ConvertJob(args.model, plan.out, plan.config, plan.formats, plan.budget, data=plan.data,
                                runtime=plan.runtime), _print)
    print()
    print(format_convert_table(report))
    for item in report.results:
        if item.cannot_load:
            print(f"{item.format.name}: {item.cannot_load}")
    print(f"manifest: {report.out_dir / 'manifest.json'}")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_CHECK_FAILED


def format_convert_table(report: ConvertReport) -> str:
    """One row per format: size, op count, and each check's verdict."""
    rows = []
    for item in report.results:
        if item.entry is None:
            rows.append((item.format.name, "-", "-", f"conversion failed: {item.error}"))
            continue
        entry = item.entry
        checks = ", ".join(
            f"{name} {'ok' if c.passed else 'FAIL'}" for name, c in entry.details.checks.items()
        )
        rows.append((
            entry.format,
            f"{entry.size / 1024:.1f} KiB",
            f"{sum(entry.ops.values())} ({len(entry.ops)} kinds)",
            checks,
        ))
    return text_table(("format", "size", "ops", "checks"), rows)


def run_parity_command(plan: Plan, args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    report = run_parity(
        args.model, args.artifacts, data=plan.data, split=args.split, tolerances=plan.config.tolerances,
        limit=args.limit, progress=_print, trusted_key=args.trusted_key,
    )
    print()
    print(format_parity_table(report))
    if args.json:
        report.save_json(args.json)
    if args.junit:
        report.save_junit(args.junit)
    print(f"{report.images} {report.split} images, {report.seconds:.1f} s")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_CHECK_FAILED


def format_parity_table(report: ParityReport) -> str:
    """One row per artefact: key metrics, each check's verdict, the first stage past tolerance and,
    for a quantized file with a stage probe, the stage where most error enters."""
    rows = []
    for r in report.results:
        checks = ", ".join(f"{c.name} {'ok' if c.passed else 'FAIL'}" for c in r.checks)
        stage = r.first_failing_stage or ("-" if r.stages else "(no probe)")
        rows.append((
            r.format,
            f"{r.metrics['max_abs']:.2e}",
            f"{100 * r.metrics['top1_agreement']:.1f}%",
            f"{100 * accuracy_drop(r.metrics):+.2f} pt",
            checks,
            stage,
            r.error_entry_cell,
        ))
    return text_table(("format", "max abs", "top-1", "acc drop", "checks", "first failing stage",
                       "most error enters at"), rows)


def run_sweep(plan: Plan, args: argparse.Namespace) -> int:
    result = sweep(args.model, plan.out, plan.config, variants=plan.formats, data=plan.data, runs=args.runs,
                   command=shlex.join(["cllnn-export", *args.argv]), progress=_print)
    print()
    print(machine_line(result.machine))
    print(text_table(HEADER, table_rows(result.rows)))
    print(f"sweep: {len(result.rows)} variants in {result.seconds:.0f} s; "
          f"{sum(r.parity_passed for r in result.rows)} pass parity, "
          f"{sum(r.on_pareto_front for r in result.rows)} on the Pareto front (*)")
    print(f"wrote {result.out_dir / 'sweep.json'}, sweep.md, sweep.png")
    return EXIT_OK


def run_run(plan: Plan, args: argparse.Namespace) -> int:
    if not plan.is_chief:  # a non-chief worker trains with the others; the chief runs every later stage
        return run_train(plan, args)
    state = run_pipeline(plan, force=args.force, sweep=args.sweep, progress=_print)
    passed = bool(ParityReport.load_json(state.layout.parity_json))
    print(f"report: {state.layout.report_html} (also report.md, report.json)")
    print("PASSED" if passed else "FAILED")
    return EXIT_OK if passed else EXIT_CHECK_FAILED
