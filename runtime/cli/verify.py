"""``cllnn-bench verify ARTIFACTS_DIR``: the command over ``runtime.checks.verify.verify``; exit 0 when every
file passes, 1 when a tolerance is broken, 2 on usage or input errors. Also ``python -m runtime.cli.verify``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.artifacts.manifest import ManifestError
from runtime.artifacts.signing import load_trusted_key
from runtime.checks.verify import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, needs_of, verify
from runtime.artifacts.opened import Artifacts
from runtime.cli.flags import add_formats_flag, add_tflite_backend_flag, add_tolerance_flag, add_trusted_key_flag
from runtime.checks.parity import ParityReport
from runtime.tables import text_table
from runtime.errors import EdgeRuntimeError
from runtime.outputs import check_output_file

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check exported CLLNN files on this device: run each file listed in the manifest "
        "(and its stage probe) through the runtime on the check set stored at export, and compare "
        "with the trained model's stored outputs under parity's tolerance table. "
        "Exit 0: all pass; 1: a tolerance is broken; 2: usage or input error.",
    )
    parser.add_argument("artifacts", type=Path, metavar="ARTIFACTS_DIR",
                        help="the directory convert wrote (manifest.json, check_set.npz, the files)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML (one case per file and check)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="runtime threads (default: each backend's own choice)")
    add_tolerance_flag(parser, "the exported tolerance table")
    add_trusted_key_flag(parser)
    add_tflite_backend_flag(parser)
    add_formats_flag(parser, "verify")
    return parser


def needs_table(artifacts: Artifacts, report: ParityReport) -> str:
    """One row per listed file verify was asked to check: the oldest release of each runtime that loads it
    (the manifest record's ``needs``), what sets it, and whether it ran here."""
    skipped = {s.file: s for s in report.skipped}
    rows = []
    for entry in artifacts.manifest.entries_of(report.formats):
        needs = needs_of(artifacts, entry)
        oldest = needs.oldest
        cells = [("-" if package not in oldest else "none" if oldest[package] is None else f">= {oldest[package]}")
                 for package in ("ai-edge-litert", "tflite-runtime", "onnxruntime")]
        why = "; ".join(dict.fromkeys(needs.reasons.values()))
        why += "" if entry.needs is not None else " (read from the file: the manifest predates needs)"
        here = "SKIPPED" if entry.file in skipped else "ran"
        rows.append((entry.file, *cells, here, why))
    header = ("file", "ai-edge-litert", "tflite-runtime", "onnxruntime", "here", "oldest set by")
    return text_table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"{PROG}: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return EXIT_USAGE
    try:
        for flag, path in (("--json", args.json), ("--junit", args.junit)):
            if path is not None:
                check_output_file(path, flag)
        trusted_key = None if args.trusted_key is None else load_trusted_key(args.trusted_key)
        artifacts = Artifacts.open(args.artifacts, trusted_key) if args.artifacts.is_dir() else args.artifacts
        report = verify(artifacts, tolerance_overrides=args.tolerance, threads=args.threads,
                        progress=lambda line: print(line, flush=True), trusted_key=trusted_key,
                        tflite_backend=args.tflite_backend, formats=args.formats)
        if args.json:
            report.save_json(args.json)
        if args.junit:
            report.save_junit(args.junit, gate="verify")
    except (EdgeRuntimeError, ManifestError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for result in report.results:
        for check in result.checks:
            if not check.passed:
                print(f"FAILED {result.format} ({result.file}): {check.name} = {check.value:.6g}, expected "
                      f"{check.rule} {check.limit:g}; first stage past tolerance: "
                      f"{result.first_failing_stage or '-'}")
    if isinstance(artifacts, Artifacts):
        print(needs_table(artifacts, report))
    for item in report.skipped:
        print(f"SKIPPED {item.format} ({item.file}): {item.reason}")
    if report.skipped and not report.results:
        print("no listed file can run on this device's runtimes")
    print(f"{report.images} {report.split} images, {report.seconds:.1f} s")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
