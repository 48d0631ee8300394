"""``cllnn-bench select ARTIFACTS_DIR --out DIR``: choose, on the device, the file to deploy.

The command line over ``runtime.deploy.choose`` (verify, measure, pick the fastest
file within the budget; the reasons) and ``runtime.deploy.directory`` (write ``DIR``
with the chosen file alone, its manifest entry and ``selection.json``).

Exit 0: a file was chosen and ``DIR`` written; 1: no file fits (none passed
verification, or the budget excludes every verified one), with the tightest
constraint named; 2: usage or input error (no such directory, no manifest or
check set, a checksum mismatch, a negative budget, an ``--out`` that select
did not write). No TensorFlow. Also ``python -m runtime.cli.select``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.bench.latency import BenchSettings
from runtime.deploy.boards import boards_help
from runtime.deploy.choose import (
    EXIT_CHOSEN,
    EXIT_NONE_FITS,
    EXIT_USAGE,
    PROG,
    Budget,
    format_table,
    select,
)
from runtime.deploy.directory import DeployError, check_out_dir, write_deploy
from runtime.errors import EdgeRuntimeError
from runtime.cli.flags import (add_formats_flag, add_tflite_backend_flag, add_timing_flags, add_tolerance_flag,
                               add_trusted_key_flag)
from runtime.artifacts.manifest import ManifestError
from runtime.artifacts.signing import load_trusted_key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Choose the exported CLLNN file to deploy on this machine: verify every file the "
        "manifest lists against the stored check set, time the verified ones, and write the fastest "
        "(p50) within the budget to --out with its manifest entry and selection.json. "
        "Exit 0: chosen; 1: no file fits the budget; 2: usage or input error.",
    )
    parser.add_argument("artifacts", type=Path, metavar="ARTIFACTS_DIR",
                        help="the directory convert wrote (manifest.json, check_set.npz, the files)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where to write the chosen file, manifest.json and selection.json; must not "
                        "exist, be empty, or hold an earlier select's output (which it replaces)")
    budget = parser.add_argument_group("budget (unset: not limited; verification always applies)")
    budget.add_argument("--max-accuracy-drop", type=float, metavar="PP",
                        help="percentage points of check-set accuracy below the trained model")
    budget.add_argument("--min-agreement", type=float, metavar="PCT",
                        help="top-1 agreement with the trained model, in percent")
    budget.add_argument("--max-size-kib", type=float, metavar="N", help="file size in KiB")
    budget.add_argument("--max-p99-us", type=float, metavar="N", help="p99 latency in microseconds")
    budget.add_argument("--board", metavar="NAME",
                        help=f"a microcontroller: only files for TFLite Micro whose flash and tensor arena fit it "
                        f"qualify; {boards_help()}")
    budget.add_argument("--flash-kib", type=float, metavar="N",
                        help="microcontroller flash for the model, KiB (replaces the board's)")
    budget.add_argument("--ram-kib", type=float, metavar="N",
                        help="microcontroller RAM for the tensor arena, KiB (replaces the board's)")
    timing = parser.add_argument_group("measurement (as cllnn-bench)")
    add_timing_flags(timing)
    add_tolerance_flag(parser, "the exported tolerance table for verification")
    add_trusted_key_flag(parser, "A signed export's manifest.json and manifest.sig are deployed unchanged")
    add_tflite_backend_flag(parser)
    add_formats_flag(parser, "consider")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        budget = Budget.for_board(args.board, max_accuracy_drop=args.max_accuracy_drop,
                                  min_agreement=args.min_agreement, max_size_kib=args.max_size_kib,
                                  max_p99_us=args.max_p99_us, max_flash_kib=args.flash_kib,
                                  max_ram_kib=args.ram_kib)
        settings = BenchSettings(batch=args.batch, threads=args.threads, warmup=args.warmup, runs=args.runs)
        if not args.artifacts.is_dir():
            raise ManifestError(f"artifacts directory not found: {args.artifacts}")
        check_out_dir(args.out)
        trusted_key = None if args.trusted_key is None else load_trusted_key(args.trusted_key)
        selection = select(args.artifacts, budget, settings, tolerance_overrides=args.tolerance,
                           progress=lambda line: print(line, flush=True), trusted_key=trusted_key,
                           tflite_backend=args.tflite_backend, formats=args.formats)
        print(format_table(selection))
        if selection:
            write_deploy(selection, args.artifacts, args.out, trusted_key=trusted_key)
    except (EdgeRuntimeError, DeployError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    chosen = selection.chosen
    if chosen is None:
        print(f"NONE CHOSEN: {selection.verdict}")
        return EXIT_NONE_FITS
    print(f"CHOSEN {chosen.file} ({chosen.format}): {selection.verdict}; written to {args.out}/")
    return EXIT_CHOSEN


if __name__ == "__main__":
    sys.exit(main())
