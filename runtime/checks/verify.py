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

A file this device's runtime cannot load is skipped, not failed, with the op and version named: from
the manifest record's ``needs`` and the compatibility table (``runtime.artifacts.compat``) before it
is loaded, and from the runtime's own refusal (``RuntimeRefusedError``) if one comes anyway; the
report lists it in ``skipped``. A file whose runtime package is not installed is skipped likewise.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.artifacts.checkset import load_check_set
from runtime.artifacts.compat import ORT_PACKAGE, installed, refusal
from runtime.artifacts.manifest import LITERT, ONNXRUNTIME, ArtifactEntry, Manifest, ManifestError, RuntimeNeeds
from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import TrustedKeyLike, load_trusted_key
from runtime.backends import tflm
from runtime.backends.litert import interpreter_version
from runtime.bench.latency import environment
from runtime.checks.parity import RUNTIME, ParityReport, Skipped, compare_artifacts, reference_summary
from runtime.checks.tolerances import ToleranceConfig
from runtime.errors import RuntimeRefusedError
from runtime.loader import runtime_needs

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
    tflite_backend: str | None = None,
    formats: Sequence[str] | None = None,
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
    ``tflite_backend``: ``"tflite-runtime"`` runs LiteRT's files on tflite-runtime's Interpreter (default:
    ai-edge-litert where installed, else tflite-runtime).
    ``formats``: only the entries of these formats (``--formats``; None: every one) are checked, a name the
    manifest does not hold a ``ManifestError``; the report's ``formats`` records the names asked.
    """
    started = time.perf_counter()
    artifacts = opened_artifacts(source, trusted_key)
    artifacts_dir, manifest = artifacts.directory, artifacts.manifest
    entries = manifest.entries_of(formats)
    check_set = load_check_set(artifacts_dir, manifest)
    artifacts.check_listed()
    tolerances = exported_tolerances(manifest) if tolerances is None else tolerances
    for assignment in tolerance_overrides:
        tolerances = tolerances.override(assignment)
    record = manifest.check_set
    assert record is not None  # load_check_set refuses a manifest without one
    progress(f"reference: outputs stored at export on {len(check_set)} {record.split} images ({record.file})")
    skipped = _skipped(artifacts, entries, formats, tflite_backend, progress)
    loadable = [e for e in entries if e.file not in {s.file for s in skipped}]
    results = compare_artifacts(artifacts, check_set.images, check_set.labels, check_set.reference, tolerances,
                                threads=threads, progress=progress, entries=loadable,
                                tflite_backend=tflite_backend,
                                refused=lambda entry, exc: skipped.append(_runtime_refused(entry, exc)))
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
        skipped=tuple(skipped),
        formats=None if formats is None else tuple(formats),
        **reference_summary(check_set.reference["output"], check_set.labels),
    )


def _skipped(artifacts: Artifacts, entries: Sequence[ArtifactEntry], formats: Sequence[str] | None,
             tflite_backend: str | None, progress: Callable[[str], None]) -> list[Skipped]:
    """The asked files this device cannot load (``refusals``), each said as it is found."""
    if formats is not None:
        progress(f"formats: {', '.join(formats)} asked ({len(entries)} of the {len(artifacts.manifest.artifacts)} "
                 f"files listed)")
    skipped = [Skipped(e.format, e.file, e.precision, why) for e, why in refusals(artifacts, tflite_backend, entries)]
    for item in skipped:
        progress(f"SKIPPED {item.format} ({item.file}): {item.reason}")
    return skipped


def _runtime_refused(entry: ArtifactEntry, exc: RuntimeRefusedError) -> Skipped:
    """A file the runtime refused although the table let it through: the runtime's word is final."""
    return Skipped(entry.format, entry.file, entry.precision, f"the runtime refused it: {exc}", RUNTIME)


def refusals(artifacts: Artifacts, tflite_backend: str | None = None,
             entries: Sequence[ArtifactEntry] | None = None) -> list[tuple[ArtifactEntry, str]]:
    """The listed files (of ``entries``; default: all) this device cannot load, each with why: its runtime package is not installed,
    or the compatibility table says the installed release lacks an op version, kernel type or opset the
    file needs (the manifest record's ``needs``; for an older manifest, read from the file's bytes)."""
    tflite = interpreter_version(tflite_backend)
    onnx = installed(ORT_PACKAGE)
    found = []
    for entry in artifacts.manifest.artifacts if entries is None else entries:
        if entry.runtime == LITERT:
            here = tflite
            missing = f"needs {tflite_backend or 'ai-edge-litert or tflite-runtime'}: not installed on this device"
        elif entry.runtime == ONNXRUNTIME:
            here = None if onnx is None else (ORT_PACKAGE, onnx)
            missing = f"needs {ORT_PACKAGE}: not installed on this device"
        else:  # TFLite Micro's kernels: no release table; its own refusal, if any, comes on loading
            if not tflm.available():
                found.append((entry, "needs tflite-micro: not installed on this device "
                                     "(pip install 'cllnn-edge[tflm]')"))
            continue
        if here is None:
            found.append((entry, missing))
            continue
        why = refusal(needs_of(artifacts, entry), *here)
        if why is not None:
            found.append((entry, why))
    return found


def needs_of(artifacts: Artifacts, entry: ArtifactEntry) -> RuntimeNeeds:
    """What ``entry``'s file asks of its runtime: the manifest record's ``needs``, or, for a manifest
    written before they were recorded, read from the file's bytes (the ones ``artifacts`` checked)."""
    return entry.needs or runtime_needs(artifacts.file(entry.file).data, entry.file)


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
