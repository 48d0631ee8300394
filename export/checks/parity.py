"""Parity: every exported file against the trained model, stage by stage.

The reference is the trained Keras model; each artefact runs through
``runtime`` (the code a device runs, never TensorFlow's interpreter). Per
artefact: max / mean absolute error of the probabilities, cosine similarity,
top-1 agreement, the accuracy of each on the labels and their difference,
checked against per-precision tolerances. Where the export left a stage probe
(the same converted graph with one output per stage), each stage's output is
compared too: the first stage past its tolerance says where an error
enters, and for a quantized file the stage whose normalised RMSE rises most
(``runtime.checks.compare.Comparison.main_error_stage``) says where most of it
does, the stage to keep at higher precision. The result is data: ``runtime.checks.parity.ParityReport`` (truthy when
every artefact passes) saves itself as JSON and JUnit XML. The per-file loop
and the report types live in ``runtime.checks.parity``, shared with a device's
``cllnn-bench verify``, which compares with outputs stored at export time
instead of a Keras model; this module adds the trained model as reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cllnn_edge.config import Config
from cllnn_edge.data import Splits
from cllnn_edge.errors import CllnnError
from cllnn_edge.model import load_trained
from cllnn_edge.sources import splits_for
from cllnn_edge.versions import library_versions
from export.graph.reference import KerasRunner, trained_reference
from runtime.artifacts.manifest import ManifestError, sha256_file
from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import TrustedKey, TrustedKeyLike, load_trusted_key
from runtime.checks.parity import ParityReport, compare_artifacts, reference_summary
from runtime.checks.tolerances import ToleranceConfig

SPLITS = ("train", "val", "test")


class ParityInputError(CllnnError, ValueError):
    """Parity cannot run: missing or inconsistent inputs (the message says what to fix)."""


def run_parity(
    model_path: str | Path,
    artifacts_dir: str | Path | Artifacts,
    *,
    data: str,
    split: str = "test",
    tolerances: ToleranceConfig = ToleranceConfig(),
    limit: int | None = None,
    splits: Splits | None = None,
    reference: KerasRunner | None = None,
    progress: Callable[[str], None] = lambda line: None,
    trusted_key: TrustedKeyLike | None = None,
) -> ParityReport:
    """Compare every artefact listed in ``artifacts_dir/manifest.json`` with the trained model.

    ``splits`` (else loaded from ``data`` with the split settings the
    manifest's config records) and ``reference`` (else built from the model
    file) let a caller that holds them already pass them in; so may ``artifacts_dir``, the
    ``runtime.artifacts.opened.Artifacts`` opened already (``cllnn-export run`` passes convert's). With
    ``trusted_key``, the manifest must be signed by it and every file match
    the signed checksums, else ``runtime.errors.SignatureError``.
    """
    started = time.perf_counter()
    model_path = Path(model_path)
    if split not in SPLITS:
        raise ParityInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    trusted_key = None if trusted_key is None else load_trusted_key(trusted_key)
    artifacts = _checked_artifacts(model_path, artifacts_dir, trusted_key)
    manifest = artifacts.manifest
    if reference is None:
        reference = trained_reference(load_trained(model_path))
    if splits is None:
        exported_with = Config.from_dict({"train": manifest.metadata.section("train")})
        splits = splits_for(exported_with, data)
    chosen = getattr(splits, split)
    images, labels = chosen.x[:limit], chosen.y[:limit]
    progress(f"reference: {reference.name} on {len(images)} {split} images")
    expected = reference.predict_outputs(images)
    try:
        results = compare_artifacts(artifacts, images, labels, expected, tolerances, progress=progress)
    except ManifestError as exc:  # a stage probe missing or altered
        raise ParityInputError(str(exc)) from exc
    return ParityReport(
        model=str(model_path),
        artifacts_dir=str(artifacts.directory),
        data=data,
        split=split,
        images=len(images),
        tolerances=tolerances.to_dict(),
        results=results,
        seconds=time.perf_counter() - started,
        versions=library_versions(),
        **reference_summary(expected["output"], labels),
    )


def _checked_artifacts(model_path: Path, source: str | Path | Artifacts,
                       trusted_key: TrustedKey | None = None) -> Artifacts:
    """The artefacts, after checking that everything their manifest promises is there and ours (and
    signed, with a key)."""
    if not model_path.is_file():
        raise ParityInputError(f"model file not found: {model_path}")
    try:
        artifacts = Artifacts.at(source, trusted_key)
    except ManifestError as exc:
        raise ParityInputError(
            f"{exc}; run 'cllnn-export convert {model_path} --out {source}' first"
        ) from exc
    source_model = artifacts.manifest.metadata.source_model
    if source_model is not None and source_model.sha256 is not None and source_model.sha256 != sha256_file(model_path):
        raise ParityInputError(
            f"{model_path} is not the model these artefacts were exported from (its SHA-256 "
            f"differs from the manifest's source_model); convert this model again or pass "
            f"the model the artefacts came from"
        )
    try:
        artifacts.check_listed()
    except ManifestError as exc:  # SignatureError is not one: a signed manifest's refusal stays what it is
        raise ParityInputError(str(exc)) from exc
    return artifacts
