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
from cllnn_edge.atomic import json_text, write_bytes_atomic, write_json_atomic
from cllnn_edge.config import ToleranceConfig
from cllnn_edge.data import load_splits
from cllnn_edge.errors import CllnnError
from cllnn_edge.model import load_trained
from export.metrics import accuracy_of, confusion_matrix, probability_metrics
from export.unroll import STAGES, stage_probe
from runtime.manifest import ArtifactEntry, ManifestError, load_manifest, sha256_file

SPLITS = ("train", "val", "test")
QUANTIZED = ("int8", "dynamic-int8")


class ParityInputError(CllnnError, ValueError):
    """Parity cannot run: missing or inconsistent inputs (the message says what to fix)."""


@dataclass(frozen=True)
class Check:
    """One tolerance: the measured value, the limit and the verdict."""

    name: str
    value: float
    limit: float
    rule: str  # "<=" or ">="
    passed: bool


@dataclass(frozen=True)
class StageResult:
    stage: str
    max_abs: float
    nrmse: float  # RMSE / standard deviation of the reference stage
    limit: float
    passed: bool


@dataclass(frozen=True)
class ArtifactParity:
    """One artefact's comparison with the trained model."""

    format: str
    file: str
    precision: str
    metrics: dict[str, float]
    checks: tuple[Check, ...]
    stages: tuple[StageResult, ...] = ()
    stage_note: str = ""
    confusion: tuple[tuple[int, ...], ...] = ()  # [true label][predicted class]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def first_failing_stage(self) -> str | None:
        return next((s.stage for s in self.stages if not s.passed), None)

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
    tolerances: dict[str, float]
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
    progress: Callable[[str], None] = lambda line: None,
) -> ParityReport:
    """Compare every artefact listed in ``artifacts_dir/manifest.json`` with the trained model."""
    started = time.perf_counter()
    model_path, artifacts_dir = Path(model_path), Path(artifacts_dir)
    if split not in SPLITS:
        raise ParityInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    entries = _checked_entries(model_path, artifacts_dir)
    trained = load_trained(model_path)
    manifest_config = load_manifest(artifacts_dir).metadata.get("config", {})
    train_cfg = manifest_config.get("train", {})
    splits = load_splits(
        data,
        validation_fraction=train_cfg.get("validation_fraction", 0.1),
        split_seed=train_cfg.get("split_seed", 42),
    )
    chosen = getattr(splits, split)
    images, labels = chosen.x[:limit], chosen.y[:limit]
    progress(f"reference: Keras on {len(images)} {split} images")
    reference_stages = [
        np.asarray(s) for s in stage_probe(trained).predict(
            images.astype(np.float32)[..., None], verbose=0, batch_size=256)
    ]
    reference = reference_stages[-1]
    results = []
    for index, entry in enumerate(entries, start=1):
        began = time.perf_counter()
        result = _compare(entry, artifacts_dir, images, labels, reference_stages, tolerances)
        results.append(result)
        verdict = "ok" if result.passed else "FAILED"
        progress(
            f"[{index}/{len(entries)}] {entry.format:<15} {verdict:<6} "
            f"top-1 {100 * result.metrics['top1_agreement']:5.1f}%  "
            f"max abs {result.metrics['max_abs']:.1e}  {time.perf_counter() - began:4.1f} s"
        )
    from cllnn_edge.versions import library_versions

    return ParityReport(
        model=str(model_path),
        artifacts_dir=str(artifacts_dir),
        data=data,
        split=split,
        images=len(images),
        tolerances=asdict(tolerances),
        reference_accuracy=accuracy_of(reference, labels),
        results=tuple(results),
        seconds=time.perf_counter() - started,
        versions=library_versions(),
        reference_confusion=_matrix(confusion_matrix(reference, labels, reference.shape[1])),
    )


def _matrix(rows: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(v) for v in row) for row in rows)


def _checked_entries(model_path: Path, artifacts_dir: Path) -> tuple[ArtifactEntry, ...]:
    """The manifest's entries, after checking that everything it promises is there and ours."""
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
    return manifest.artifacts


def _compare(
    entry: ArtifactEntry,
    artifacts_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    reference_stages: list[np.ndarray],
    tolerances: ToleranceConfig,
) -> ArtifactParity:
    reference = reference_stages[-1]
    with runtime.load(artifacts_dir / entry.file) as model:
        probs = model.predict(images)
    metrics = probability_metrics(reference, probs, labels)
    stages, note = _stages(entry, artifacts_dir, images, reference_stages, tolerances)
    return ArtifactParity(
        format=entry.format,
        file=entry.file,
        precision=entry.precision,
        metrics=metrics,
        checks=_checks(entry.precision, metrics, tolerances),
        stages=stages,
        stage_note=note,
        confusion=_matrix(confusion_matrix(probs, labels, reference.shape[1])),
    )


def _checks(precision: str, metrics: dict[str, float], tol: ToleranceConfig) -> tuple[Check, ...]:
    def at_most(name: str, value: float, limit: float) -> Check:
        return Check(name, value, limit, "<=", value <= limit)

    if precision == "float32":
        return (at_most("max_abs", metrics["max_abs"], tol.float32_max_abs),)
    if precision == "float16":
        return (at_most("max_abs", metrics["max_abs"], tol.float16_max_abs),)
    top1 = metrics["top1_agreement"]
    return (
        Check("top1_agreement", top1, tol.quantized_min_top1, ">=", top1 >= tol.quantized_min_top1),
        at_most("accuracy_drop", -metrics["accuracy_delta"], tol.quantized_max_accuracy_drop),
    )


def _stage_limit(precision: str, tol: ToleranceConfig) -> float:
    return {"float32": tol.float32_stage_nrmse, "float16": tol.float16_stage_nrmse}.get(
        precision, tol.quantized_stage_nrmse
    )


def _stages(
    entry: ArtifactEntry,
    artifacts_dir: Path,
    images: np.ndarray,
    reference_stages: list[np.ndarray],
    tol: ToleranceConfig,
) -> tuple[tuple[StageResult, ...], str]:
    """Per-stage errors from the artefact's probe file, if the export left one."""
    probe = entry.details.get("probe") or {}
    if "file" not in probe:
        return (), probe.get("error", "no stage probe in the manifest (exported without probes)")
    path = artifacts_dir / probe["file"]
    if not path.is_file() or sha256_file(path) != probe.get("sha256"):
        raise ParityInputError(
            f"stage probe {path} is missing or does not match its manifest checksum; "
            f"re-run cllnn-export convert"
        )
    with runtime.load(path, manifest=None) as model:
        outputs = model.predict_outputs(images)
    limit = _stage_limit(entry.precision, tol)
    results = []
    for stage, ref, got in zip(STAGES, reference_stages, outputs):
        ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64).reshape(ref.shape)
        error = ref64 - got64
        spread = float(ref64.std()) or 1.0
        nrmse = float(np.sqrt(np.mean(error**2)) / spread)
        results.append(StageResult(stage, float(np.abs(error).max()), nrmse, limit, nrmse <= limit))
    return tuple(results), ""
