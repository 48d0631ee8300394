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
``--junit`` write it. Also ``python -m runtime.cli.verify``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.artifacts.checkset import load_check_set
from runtime.artifacts.manifest import Manifest, ManifestError
from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import TrustedKeyLike, load_trusted_key
from runtime.bench.latency import environment
from runtime.checks.parity import ParityReport, compare_artifacts, reference_summary
from runtime.checks.tolerances import ToleranceConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "cllnn-bench verify"


def verify(
    source: str | Path | Artifacts,
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
    ``source`` is the directory, or its ``Artifacts`` opened already (each file is then hashed
    once for every use). With ``trusted_key``, the manifest must be signed by it and every file
    match the signed checksums, else ``SignatureError`` (``runtime.artifacts.signing``).
    """
    started = time.perf_counter()
    artifacts = opened_artifacts(source, trusted_key)
    artifacts_dir, manifest = artifacts.directory, artifacts.manifest
    check_set = load_check_set(artifacts_dir, manifest)
    artifacts.check_listed()
    tolerances = exported_tolerances(manifest) if tolerances is None else tolerances
    for assignment in tolerance_overrides:
        tolerances = tolerances.override(assignment)
    record = manifest.check_set
    assert record is not None  # load_check_set refuses a manifest without one
    progress(f"reference: outputs stored at export on {len(check_set)} {record.split} images ({record.file})")
    results = compare_artifacts(artifacts, check_set.images, check_set.labels, check_set.reference, tolerances,
                                threads=threads, progress=progress)
    return ParityReport(
        model=manifest.metadata.source_file,
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
    return ToleranceConfig.from_dict(manifest.metadata.tolerance_rows)


def opened_artifacts(source: str | Path | Artifacts, trusted_key: TrustedKeyLike | None) -> Artifacts:
    """``source``'s artefacts, opened (the manifest read once, signed with a key) if they are not yet."""
    if trusted_key is not None and not isinstance(source, Artifacts):
        trusted_key = load_trusted_key(trusted_key)  # a bad key is the caller's error, whatever the directory
    if not isinstance(source, Artifacts) and not Path(source).is_dir():
        raise ManifestError(f"artifacts directory not found: {source}")
    return Artifacts.at(source, trusted_key)


def _versions() -> dict[str, str]:
    """The device's libraries, as its benchmarks record them."""
    return {"python": platform.python_version(), **environment()["versions"]}
