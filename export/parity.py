"""Parity: every exported file against the trained model, stage by stage.

The reference is the trained Keras model; each artefact runs through
``runtime`` (the code a device runs, never TensorFlow's interpreter). Per
artefact: max / mean absolute error of the probabilities, cosine similarity,
top-1 agreement, the accuracy of each on the labels and their difference,
checked against per-precision tolerances. Where the export left a stage probe
(the same converted graph with one output per stage), each stage's output is
compared too, and the first stage past its tolerance says where an error
enters. The result is data: ``ParityReport`` (truthy when every artefact
passes) saves itself as JSON and JUnit XML.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from cllnn_edge.config import Config
from cllnn_edge.data import Splits, splits_for
from cllnn_edge.errors import CllnnError
from cllnn_edge.model import load_trained
from cllnn_edge.versions import library_versions
from export.reference import KerasRunner, trained_reference
from runtime.atomic import json_text, write_bytes_atomic, write_json_atomic
from runtime.compare import Check, Comparison, StageResult, compare
from runtime.manifest import (
    ArtifactEntry,
    Manifest,
    ManifestError,
    load_manifest,
    sha256_file,
)
from runtime.metrics import accuracy_of, confusion_matrix
from runtime.tolerances import Tolerance, ToleranceConfig

SPLITS = ("train", "val", "test")


class ParityInputError(CllnnError, ValueError):
    """Parity cannot run: missing or inconsistent inputs (the message says what to fix)."""


@dataclass(frozen=True, kw_only=True)
class ArtifactParity(Comparison):
    """One artefact's comparison with the trained model: which file, and how it compared."""

    format: str
    file: str
    precision: str
    stage_note: str = ""
    confusion: tuple[tuple[int, ...], ...] = ()  # [true label][predicted class]

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "passed": self.passed,
            "first_failing_stage": self.first_failing_stage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactParity:
        return cls(
            format=data["format"],
            file=data["file"],
            precision=data["precision"],
            metrics=dict(data["metrics"]),
            checks=tuple(Check(**c) for c in data["checks"]),
            stages=tuple(StageResult(**s) for s in data.get("stages", [])),
            stage_note=data.get("stage_note", ""),
            confusion=_matrix(data.get("confusion", ())),
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
    reference_confusion: tuple[tuple[int, ...], ...] = ()  # the trained model's, [true][predicted]

    def __bool__(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "results"},
            "passed": bool(self),
            "results": [r.to_dict() for r in self.results],
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
            reference_confusion=_matrix(data.get("reference_confusion", ())),
        )

    def to_json(self) -> str:
        return json_text(self.to_dict())

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> ParityReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save_junit(self, path: str | Path) -> None:
        """One test case per artefact and check; a failure names the first stage past tolerance."""
        suite = ET.Element(
            "testsuite",
            name="cllnn-parity",
            tests=str(sum(len(r.checks) for r in self.results)),
            failures=str(sum(not c.passed for r in self.results for c in r.checks)),
            time=f"{self.seconds:.3f}",
        )
        for result in self.results:
            for check in result.checks:
                case = ET.SubElement(
                    suite, "testcase", classname=f"parity.{result.format}", name=check.name,
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


def run_parity(
    model_path: str | Path,
    artifacts_dir: str | Path,
    *,
    data: str,
    split: str = "test",
    tolerances: ToleranceConfig = ToleranceConfig(),
    limit: int | None = None,
    splits: Splits | None = None,
    reference: KerasRunner | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> ParityReport:
    """Compare every artefact listed in ``artifacts_dir/manifest.json`` with the trained model.

    ``splits`` (else loaded from ``data`` with the split settings the
    manifest's config records) and ``reference`` (else built from the model
    file) let a caller that holds them already pass them in.
    """
    started = time.perf_counter()
    model_path, artifacts_dir = Path(model_path), Path(artifacts_dir)
    if split not in SPLITS:
        raise ParityInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    manifest = _checked_manifest(model_path, artifacts_dir)
    if reference is None:
        reference = trained_reference(load_trained(model_path))
    if splits is None:
        exported_with = Config.from_dict({"train": manifest.metadata.get("config", {}).get("train", {})})
        splits = splits_for(exported_with, data)
    chosen = getattr(splits, split)
    images, labels = chosen.x[:limit], chosen.y[:limit]
    progress(f"reference: {reference.name} on {len(images)} {split} images")
    expected = reference.predict_outputs(images)
    results = []
    for index, entry in enumerate(manifest.artifacts, start=1):
        began = time.perf_counter()
        result = _compare(entry, artifacts_dir, images, labels, expected, tolerances[entry.precision])
        results.append(result)
        verdict = "ok" if result.passed else "FAILED"
        progress(
            f"[{index}/{len(manifest.artifacts)}] {entry.format:<15} {verdict:<6} "
            f"top-1 {100 * result.metrics['top1_agreement']:5.1f}%  "
            f"max abs {result.metrics['max_abs']:.1e}  {time.perf_counter() - began:4.1f} s"
        )
    probabilities = expected["output"]
    return ParityReport(
        model=str(model_path),
        artifacts_dir=str(artifacts_dir),
        data=data,
        split=split,
        images=len(images),
        tolerances=tolerances.to_dict(),
        reference_accuracy=accuracy_of(probabilities, labels),
        results=tuple(results),
        seconds=time.perf_counter() - started,
        versions=library_versions(),
        reference_confusion=_matrix(confusion_matrix(probabilities, labels, probabilities.shape[1])),
    )


def _matrix(rows: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(v) for v in row) for row in rows)


def _checked_manifest(model_path: Path, artifacts_dir: Path) -> Manifest:
    """The manifest, after checking that everything it promises is there and ours."""
    if not model_path.is_file():
        raise ParityInputError(f"model file not found: {model_path}")
    try:
        manifest = load_manifest(artifacts_dir)
    except ManifestError as exc:
        raise ParityInputError(
            f"{exc}; run 'cllnn-export convert {model_path} --out {artifacts_dir}' first"
        ) from exc
    if not manifest.artifacts:
        raise ParityInputError(f"the manifest in {artifacts_dir} lists no artefacts")
    source = manifest.metadata.get("source_model", {}).get("sha256")
    if source is not None and source != sha256_file(model_path):
        raise ParityInputError(
            f"{model_path} is not the model these artefacts were exported from (its SHA-256 "
            f"differs from the manifest's source_model); convert this model again or pass "
            f"the model the artefacts came from"
        )
    for entry in manifest.artifacts:
        path = artifacts_dir / entry.file
        if not path.is_file():
            raise ParityInputError(
                f"{entry.file} is listed in the manifest but missing from {artifacts_dir}; "
                f"re-run cllnn-export convert"
            )
        if sha256_file(path) != entry.sha256:
            raise ParityInputError(
                f"{path} does not match its manifest checksum (modified after export); "
                f"re-run cllnn-export convert"
            )
    return manifest


def _compare(
    entry: ArtifactEntry,
    artifacts_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    expected: dict[str, np.ndarray],
    tolerance: Tolerance,
) -> ArtifactParity:
    with runtime.load(artifacts_dir / entry.file) as model:
        probabilities = model.predict(images)
    stages, note = _probe_outputs(entry, artifacts_dir, images)
    comparison = compare(expected, probabilities, tolerance, labels=labels, stages=stages)
    return ArtifactParity(
        **vars(comparison),
        format=entry.format,
        file=entry.file,
        precision=entry.precision,
        stage_note=note,
        confusion=_matrix(confusion_matrix(probabilities, labels, probabilities.shape[1])),
    )


def _probe_outputs(
    entry: ArtifactEntry, artifacts_dir: Path, images: np.ndarray
) -> tuple[dict[str, np.ndarray] | None, str]:
    """Every stage's output from the artefact's probe file, if the export left one."""
    probe = entry.details.probe
    if probe is None or probe.file is None:
        return None, (probe.error if probe else None) or "no stage probe in the manifest (exported without probes)"
    path = artifacts_dir / probe.file
    if not path.is_file() or sha256_file(path) != probe.sha256:
        raise ParityInputError(
            f"stage probe {path} is missing or does not match its manifest checksum; "
            f"re-run cllnn-export convert"
        )
    with runtime.load(path, manifest=None) as model:
        return model.predict_outputs(images), ""
