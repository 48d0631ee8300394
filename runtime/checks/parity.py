"""Parity results and the per-file comparison, shared by ``cllnn-export parity`` and ``cllnn-bench verify``.

Both gates run every file a manifest lists (and its stage probe, where the
export left one) through ``runtime.load`` on a set of images, and compare the
outputs with a reference under the tolerance table: the trained Keras model
computed on the spot (``export.checks.parity``, which has TensorFlow), or the outputs
stored beside the files at export time (``runtime.checks.verify``, on a device). The
loop, the report types and their JSON / JUnit forms live here, numpy only, so
both gates give the same verdicts in the same shape.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.atomic import json_text, write_bytes_atomic, write_json_atomic
from runtime.checks.compare import Check, Comparison, StageContribution, StageResult, compare
from runtime.loader import backend_for, load
from runtime.artifacts.manifest import ArtifactEntry
from runtime.artifacts.opened import Artifacts
from runtime.checks.metrics import accuracy_of, confusion_matrix
from runtime.checks.tolerances import Tolerance, ToleranceConfig
from runtime.errors import RuntimeRefusedError

Progress = Callable[[str], None]
TABLE, RUNTIME = "table", "runtime"  # who refused a skipped file: the compatibility table, or the runtime itself


@dataclass(frozen=True)
class Skipped:
    """A listed file this device's runtime cannot load, and why (``by``: the table before loading, or the
    runtime's own refusal): not compared, never chosen."""

    format: str
    file: str
    precision: str
    reason: str
    by: str = TABLE


@dataclass(frozen=True, kw_only=True)
class ArtifactParity(Comparison):
    """One artefact's comparison with the reference: which file, and how it compared."""

    format: str
    file: str
    precision: str
    stage_note: str = ""
    confusion: tuple[tuple[int, ...], ...] = ()  # [true label][predicted class]

    @property
    def quantized(self) -> bool:
        """Stored below float32: the files where keeping one stage at higher precision can help."""
        return self.precision != "float32"

    @property
    def error_entry(self) -> StageContribution | None:
        """``main_error_stage`` for a quantized file, as reports and progress lines show it; None for
        float32 (its error is rounding noise: no stage to keep at higher precision)."""
        return self.main_error_stage if self.quantized else None

    @property
    def error_entry_cell(self) -> str:
        """``error_entry`` as a table cell: its ``describe()``, or "-" (float32, no probe, no error)."""
        return "-" if self.error_entry is None else self.error_entry.describe()

    def to_dict(self) -> dict[str, Any]:
        contribution = self.main_error_stage
        return {
            **asdict(self),
            "passed": self.passed,
            "first_failing_stage": self.first_failing_stage,
            "main_error_stage": None if contribution is None else asdict(contribution),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactParity:
        """The inverse of ``to_dict``; ``passed``, ``first_failing_stage`` and ``main_error_stage``
        are derived from the checks and stages, so they are read back from those (and may be absent)."""
        return cls(
            format=data["format"],
            file=data["file"],
            precision=data["precision"],
            metrics=dict(data["metrics"]),
            checks=tuple(Check(**c) for c in data["checks"]),
            stages=tuple(StageResult(**s) for s in data.get("stages", [])),
            stage_note=data.get("stage_note", ""),
            confusion=matrix(data.get("confusion", ())),
        )


@dataclass(frozen=True)
class ParityReport:
    """All artefacts' results; ``bool(report)`` is True when every artefact passed."""

    model: str
    artifacts_dir: str
    data: str
    split: str
    images: int
    tolerances: dict[str, dict[str, float]]  # the table, per precision
    reference_accuracy: float
    results: tuple[ArtifactParity, ...]
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    reference_confusion: tuple[tuple[int, ...], ...] = ()  # the reference's, [true][predicted]
    skipped: tuple[Skipped, ...] = ()  # files this device's runtime cannot load (verify), not compared
    formats: tuple[str, ...] | None = None  # verify --formats: the formats asked (None: every listed file)

    def __bool__(self) -> bool:
        """Every compared file passed, and at least one was compared when some were skipped."""
        return all(r.passed for r in self.results) and bool(self.results or not self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("results", "skipped", "formats")},
            "formats": None if self.formats is None else list(self.formats),
            "passed": bool(self),
            "results": [r.to_dict() for r in self.results],
            "skipped": [asdict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityReport:
        fields = {k: data[k] for k in ("model", "artifacts_dir", "data", "split", "images",
                                      "tolerances", "reference_accuracy")}
        return cls(
            **fields,
            results=tuple(ArtifactParity.from_dict(r) for r in data["results"]),
            seconds=float(data.get("seconds", 0.0)),
            versions=dict(data.get("versions", {})),
            reference_confusion=matrix(data.get("reference_confusion", ())),
            skipped=tuple(Skipped(**s) for s in data.get("skipped", ())),
            formats=None if data.get("formats") is None else tuple(data["formats"]),
        )

    def to_json(self) -> str:
        return json_text(self.to_dict())

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> ParityReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save_junit(self, path: str | Path, *, gate: str = "parity") -> None:
        """One test case per artefact and check; a failure names the first stage past tolerance.

        ``gate`` names the suite (``cllnn-<gate>``) and prefixes each class name
        (``<gate>.<format>``): "parity" for ``cllnn-export parity``, "verify" on a device.
        """
        suite = ET.Element(
            "testsuite",
            name=f"cllnn-{gate}",
            tests=str(sum(len(r.checks) for r in self.results)),
            failures=str(sum(not c.passed for r in self.results for c in r.checks)),
            time=f"{self.seconds:.3f}",
        )
        for result in self.results:
            for check in result.checks:
                case = ET.SubElement(
                    suite, "testcase", classname=f"{gate}.{result.format}", name=check.name,
                    time="0",
                )
                if not check.passed:
                    stage = result.first_failing_stage or "none past its tolerance"
                    ET.SubElement(case, "failure", message=(
                        f"{result.format} ({result.file}): {check.name} = {check.value:.6g}, "
                        f"expected {check.rule} {check.limit:g}; first stage past tolerance: {stage}"
                    ))
        tree = ET.ElementTree(ET.Element("testsuites"))
        tree.getroot().append(suite)
        ET.indent(tree)
        write_bytes_atomic(path, ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))


def compare_artifacts(
    artifacts: Artifacts,
    images: np.ndarray,
    labels: np.ndarray,
    expected: Mapping[str, np.ndarray],
    tolerances: ToleranceConfig,
    *,
    threads: int | None = None,
    progress: Progress = lambda line: None,
    entries: Sequence[ArtifactEntry] | None = None,
    tflite_backend: str | None = None,
    refused: Callable[[ArtifactEntry, RuntimeRefusedError], None] | None = None,
) -> tuple[ArtifactParity, ...]:
    """Run each listed file (and its stage probe) on ``images`` and compare with ``expected``.

    ``expected`` maps stage names (``output`` = the probabilities) to the
    reference's outputs on ``images``; each file is held to its precision's
    row of ``tolerances``. One progress line per file (for a quantized file
    with a stage probe, it names the stage where most error enters). A probe
    file that is missing or altered raises ``ManifestError`` (``SignatureError`` when ``artifacts``
    were opened with a trusted key). Each file is loaded from the bytes ``artifacts`` checked.
    ``entries``: the files to compare (default: every listed one); ``tflite_backend``: the device command's
    ``--tflite-backend`` (``runtime.loader.backend_for``: LiteRT's files on tflite-runtime when asked); ``refused``: called, and the file left out, when the runtime
    refuses a file (``RuntimeRefusedError``) instead of the error ending the loop.
    """
    results = []
    listed = list(artifacts.manifest.artifacts if entries is None else entries)
    for index, entry in enumerate(listed, start=1):
        began = time.perf_counter()
        try:
            result = _compare(artifacts, entry, images, labels, expected, tolerances[entry.precision], threads,
                              tflite_backend)
        except RuntimeRefusedError as exc:
            if refused is None:
                raise
            refused(entry, exc)
            progress(f"[{index}/{len(listed)}] {entry.format:<15} SKIPPED the runtime refused it: {exc}")
            continue
        results.append(result)
        verdict = "ok" if result.passed else "FAILED"
        entry_note = "" if result.error_entry is None else f"  most error enters at: {result.error_entry.describe()}"
        progress(
            f"[{index}/{len(listed)}] {entry.format:<15} {verdict:<6} "
            f"top-1 {100 * result.metrics['top1_agreement']:5.1f}%  "
            f"max abs {result.metrics['max_abs']:.1e}  {time.perf_counter() - began:4.1f} s{entry_note}"
        )
    return tuple(results)


def reference_summary(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The reference's own accuracy and confusion matrix, as ``ParityReport`` keeps them."""
    return {
        "reference_accuracy": accuracy_of(probabilities, labels),
        "reference_confusion": matrix(confusion_matrix(probabilities, labels, probabilities.shape[1])),
    }


def matrix(rows: Any) -> tuple[tuple[int, ...], ...]:
    """Nested integer rows as a hashable, comparable tuple of tuples."""
    return tuple(tuple(int(v) for v in row) for row in rows)


def _compare(
    artifacts: Artifacts,
    entry: ArtifactEntry,
    images: np.ndarray,
    labels: np.ndarray,
    expected: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    threads: int | None,
    tflite_backend: str | None = None,
) -> ArtifactParity:
    backend = backend_for(entry.runtime, tflite_backend)
    with load(artifacts.file(entry.file), threads=threads, backend=backend) as model:
        probabilities = model.predict(images)
    stages, note = _probe_outputs(artifacts, entry, images, threads, backend)
    comparison = compare(expected, probabilities, tolerance, labels=labels, stages=stages)
    return ArtifactParity(
        **vars(comparison),
        format=entry.format,
        file=entry.file,
        precision=entry.precision,
        stage_note=note,
        confusion=matrix(confusion_matrix(probabilities, labels, probabilities.shape[1])),
    )


def _probe_outputs(
    artifacts: Artifacts, entry: ArtifactEntry, images: np.ndarray, threads: int | None, backend: str | None
) -> tuple[dict[str, np.ndarray] | None, str]:
    """Every stage's output from the artefact's probe file, if the export left one."""
    probe = artifacts.probe(entry)
    if probe is None:
        record = entry.details.probe
        return None, (record.error if record else None) or "no stage probe in the manifest (exported without probes)"
    with load(probe, threads=threads, backend=backend) as model:
        return model.predict_outputs(images), ""
