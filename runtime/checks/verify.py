"""``cllnn-bench verify ARTIFACTS_DIR``: check on this device the files it is about to run.

The export kept a check set beside the files (``check_set.npz``: labelled
test images and the trained model's outputs on them, ``runtime.artifacts.checkset``),
listed in ``manifest.json`` with its SHA-256. ``verify`` checks that
checksum and every listed file's, runs each file (and its stage probe, where
the manifest lists one) through ``runtime.load`` on the check set's images,
and compares the outputs with the stored ones using the comparator and the
tolerance table of ``cllnn-export parity`` (``runtime.checks.compare``,
``runtime.checks.tolerances``): the table the manifest's config recorded at export,
with ``--tolerance`` overrides. No TensorFlow, no data set, no trained model.

Exit 0: every file passes; 1: a tolerance is broken; 2: usage or input error
(no such directory, no manifest, no check set, a checksum mismatch). The
report is ``runtime.checks.parity.ParityReport``, as parity's: ``--json`` and
``--junit`` write it. Also ``python -m runtime.checks.verify``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.artifacts.checkset import load_check_set
from runtime.errors import EdgeRuntimeError, SignatureError
from runtime.cli.flags import add_tolerance_flag, add_trusted_key_flag
from runtime.artifacts.manifest import Manifest, ManifestError, load_manifest
from runtime.outputs import check_output_file
from runtime.checks.parity import ParityReport, check_listed_files, compare_artifacts, reference_summary
from runtime.artifacts.signing import TrustedKeyLike, load_trusted_key, load_verified_manifest
from runtime.checks.tolerances import ToleranceConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "cllnn-bench verify"


def verify(
    artifacts_dir: str | Path,
    *,
    tolerances: ToleranceConfig | None = None,
    tolerance_overrides: Sequence[str] = (),
    threads: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
    trusted_key: TrustedKeyLike | None = None,
) -> ParityReport:
    """Compare every file listed in ``artifacts_dir/manifest.json`` with the stored check set.

    Files are held to ``tolerances`` (default: the table the manifest's config
    recorded at export), with ``tolerance_overrides`` on top. A caller that
    owns the gate passes its own table: ``cllnn-export run``'s select stage
    passes the run's, which may have changed since the files were exported.
    Raises ``ManifestError`` / ``CheckSetError`` / ``ToleranceError`` (all
    ``ValueError``) when the inputs are missing or altered; a broken
    tolerance is a result (``bool(report)`` is False), not an exception.
    With ``trusted_key``, the manifest must be signed by it and every file
    match the signed checksums, else ``SignatureError`` (``runtime.artifacts.signing``).
    """
    started = time.perf_counter()
    artifacts_dir = Path(artifacts_dir)
    trusted_key = None if trusted_key is None else load_trusted_key(trusted_key)  # read once, used per file
    if not artifacts_dir.is_dir():
        raise ManifestError(f"artifacts directory not found: {artifacts_dir}")
    manifest = load_manifest(artifacts_dir) if trusted_key is None else load_verified_manifest(artifacts_dir,
                                                                                                trusted_key)
    check_set = load_check_set(artifacts_dir, manifest)
    try:
        check_listed_files(manifest, artifacts_dir)
    except ManifestError as exc:
        if trusted_key is None:
            raise
        raise SignatureError(f"a file changed after signing: {exc}") from exc
    tolerances = exported_tolerances(manifest) if tolerances is None else tolerances
    for assignment in tolerance_overrides:
        tolerances = tolerances.override(assignment)
    record = manifest.check_set
    assert record is not None  # load_check_set refuses a manifest without one
    progress(f"reference: outputs stored at export on {len(check_set)} {record.split} images ({record.file})")
    results = compare_artifacts(manifest, artifacts_dir, check_set.images, check_set.labels,
                                check_set.reference, tolerances, threads=threads, progress=progress,
                                trusted_key=trusted_key)
    return ParityReport(
        model=str(manifest.metadata.get("source_model", {}).get("file", "")),
        artifacts_dir=str(artifacts_dir),
        data=f"{record.file} ({record.source})",
        split=record.split,
        images=len(check_set),
        tolerances=tolerances.to_dict(),
        results=results,
        seconds=time.perf_counter() - started,
        versions=_versions(),
        **reference_summary(check_set.reference["output"], check_set.labels),
    )


def exported_tolerances(manifest: Manifest) -> ToleranceConfig:
    """The tolerance table the export recorded in its config (the defaults where it recorded none)."""
    rows = manifest.metadata.get("config", {}).get("tolerances", {})
    return ToleranceConfig.from_dict(rows)


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
    return parser


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
        report = verify(args.artifacts, tolerance_overrides=args.tolerance, threads=args.threads,
                        progress=lambda line: print(line, flush=True), trusted_key=trusted_key)
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
    print(f"{report.images} {report.split} images, {report.seconds:.1f} s")
    print("PASSED" if report else "FAILED")
    return EXIT_OK if report else EXIT_FAILED


def _versions() -> dict[str, str]:
    from runtime.bench.latency import environment  # the device's libraries, as its benchmarks record them

    return {"python": platform.python_version(), **environment()["versions"]}


if __name__ == "__main__":
    sys.exit(main())
