"""Describe and check one converted file through ``runtime``, as a device would load it.

The manifest entry records what the file is (specs, op counts, checksum, what it needs of its runtime:
op versions or opsets, and the oldest runtime releases that load it) and
how it compares with the trained model on real test images; the checks are
the export-time gate (the full, stage-by-stage comparison is ``parity``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import runtime
from export.errors import ConversionError
from export.formats.registry import Format
from export.graph.stages import PROBE_OUTPUTS
from runtime.checks.compare import compare
from runtime.artifacts.manifest import ArtifactDetails, ArtifactEntry, ProbeRecord, sha256_bytes, sha256_file
from runtime.loader import runtime_needs
from runtime.checks.tolerances import Tolerance

PROBES_DIR = "probes"  # stage probes, beside the artefacts: probes/<artefact file name>


def describe_artifact(
    fmt: Format, path: Path, images: np.ndarray, reference: dict[str, np.ndarray], tolerance: Tolerance
) -> ArtifactEntry:
    """Load ``path`` with the device runtime, run it on ``images`` and check it: its outputs
    against ``reference`` (the trained model's, on ``images``) under ``tolerance.at_export()``,
    the file itself against the format's own checks."""
    try:
        model = runtime.load(path, backend=fmt.runtime)
    except (ValueError, OSError) as exc:
        raise ConversionError(f"{fmt.name}: the device runtime cannot load the file: {exc}") from exc
    with model:
        comparison = compare(reference, model.predict(images), tolerance.at_export())
        checks = {check.name: check.record() for check in comparison.checks}
        checks.update((check.name, check(path, model)) for check in fmt.checks)
        inputs, outputs, ops = (model.input_spec,), (model.output_spec,), model.ops
    data = path.read_bytes()  # once, for its checksum, size and op versions
    return ArtifactEntry(
        file=path.name,
        format=fmt.name,
        runtime=fmt.runtime,
        precision=fmt.precision,
        sha256=sha256_bytes(data),
        size=len(data),
        inputs=inputs,
        outputs=outputs,
        ops=ops,
        needs=runtime_needs(data, path.name),
        details=ArtifactDetails(
            description=fmt.description,
            metrics=comparison.metrics,
            checks=checks,
            reproducible=fmt.reproducible,
            reproducibility=fmt.reproducibility_note,
        ),
    )


def describe_probe(path: Path, root: Path, images: np.ndarray) -> ProbeRecord:
    """The manifest's record of a stage probe file, or why the runtime cannot run it.

    A probe is the artefact's graph converted with the same settings but with
    one named output per stage (``PROBE_OUTPUTS``); ``parity`` reads it with
    ``RuntimeModel.predict_outputs``. It is run once on a few ``images`` here,
    so a recorded probe is known to load and run.
    """
    try:
        with runtime.load(path) as model:
            outputs = model.predict_outputs(images[:8])
            specs = model.output_specs
    except (ValueError, OSError, runtime.EdgeRuntimeError) as exc:
        return ProbeRecord(error=f"the device runtime cannot run the probe: {exc}")
    if sorted(outputs) != sorted(PROBE_OUTPUTS):
        return ProbeRecord(error=f"the probe's outputs are {sorted(outputs)}, expected {list(PROBE_OUTPUTS)}")
    return ProbeRecord(
        file=path.relative_to(root).as_posix(),
        sha256=sha256_file(path),
        size=path.stat().st_size,
        stages=PROBE_OUTPUTS,
        outputs=specs,
    )
