"""``cllnn-bench MODEL...``: time exported files through the device runtime (``runtime.bench.latency``),
print the table, write JSON, and with ``--baseline`` fail on a p50 regression. Also ``python -m runtime.cli.bench``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runtime.artifacts.manifest import ManifestError
from runtime.artifacts.signing import load_trusted_key
from runtime.atomic import write_bytes_atomic
from runtime.bench.latency import (
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    BenchSettings,
    bench_model,
    environment,
    format_table,
    load_baseline,
    regressions,
)
from runtime.artifacts.manifest import TFLITE_RUNTIME
from runtime.backends.tflite_check import looks_like_tflite
from runtime.cli.flags import add_tflite_backend_flag, add_timing_flags, add_trusted_key_flag
from runtime.errors import EdgeRuntimeError
from runtime.outputs import check_output_file

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cllnn-bench",
        description="Time exported CLLNN models (.tflite / .onnx) through the device runtime: "
        "predict() on random uint8 images, after a warm-up.",
        epilog="cllnn-bench verify ARTIFACTS_DIR checks exported files against the check set stored "
        "beside them (see cllnn-bench verify --help); cllnn-bench select ARTIFACTS_DIR --out DIR chooses "
        "the file to deploy on this machine within a budget (see cllnn-bench select --help).",
    )
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL")
    add_timing_flags(parser)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--baseline", type=Path, metavar="FILE",
                        help="a JSON written by an earlier --json run to compare p50 against")
    parser.add_argument("--max-regression", type=float, default=10.0, metavar="PCT",
                        help="with --baseline: exit 1 if a p50 grew by more (default 10)")
    add_trusted_key_flag(parser, "Only files listed in it are timed")
    add_tflite_backend_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = BenchSettings(batch=args.batch, threads=args.threads,
                                 warmup=args.warmup, runs=args.runs)
        if args.json:
            check_output_file(args.json, "--json")
        baseline = load_baseline(args.baseline) if args.baseline else None
        trusted_key = None if args.trusted_key is None else load_trusted_key(args.trusted_key)
    except (ValueError, OSError) as exc:
        print(f"cllnn-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = []
    for number, path in enumerate(args.models, start=1):
        label = f"[{number}/{len(args.models)}] {path.name}"
        try:
            results.append(bench_model(path, settings, progress=_progress_printer(label),
                                       trusted_key=trusted_key, backend=_backend(path, args.tflite_backend)))
        except (EdgeRuntimeError, ManifestError, ValueError, OSError) as exc:
            print(f"\ncllnn-bench: error: {path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(format_table(results))
    report = {"settings": asdict(settings), **environment(),
              "results": [r.to_dict() for r in results]}
    if args.json:
        _write_json(args.json, report)
    if baseline is not None:
        failures = regressions(results, baseline, args.max_regression)
        for line in failures:
            print(f"REGRESSION {line}")
        print("FAILED" if failures else "PASSED")
        return EXIT_REGRESSION if failures else EXIT_OK
    return EXIT_OK


def _backend(path: Path, tflite_backend: str | None) -> str | None:
    """``--tflite-backend tflite-runtime`` for a TFLite file (by content, as ``runtime.load``); an ONNX file
    keeps its own runtime. A missing file is left for ``bench_model`` to name."""
    if tflite_backend != TFLITE_RUNTIME:
        return None
    try:
        with open(path, "rb") as handle:
            return TFLITE_RUNTIME if looks_like_tflite(handle.read(8)) else None
    except OSError:
        return None


def _progress_printer(label: str) -> Callable[[int, int], None]:
    """A live line on a terminal, nothing in logs."""
    interactive = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if interactive and (done == total or done % max(1, total // 20) == 0):
            end = "\n" if done == total else ""
            print(f"\r{label}: {done}/{total} runs", end=end, file=sys.stderr, flush=True)

    return show


def _write_json(path: Path, report: dict[str, Any]) -> None:
    """Temp file + rename, so a reader never sees half a report (and a failure leaves no temp file)."""
    write_bytes_atomic(path, (json.dumps(report, indent=2) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
