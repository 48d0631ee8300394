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
from runtime.errors import SignatureError
from runtime.artifacts.manifest import Manifest, ManifestError, load_manifest, sha256_file
from runtime.checks.parity import ParityReport, check_listed_files, compare_artifacts, reference_summary
from runtime.artifacts.signing import TrustedKey, TrustedKeyLike, load_trusted_key, load_verified_manifest
from runtime.checks.tolerances import ToleranceConfig

SPLITS = ("train", "val", "test")


class ParityInputError(CllnnError, ValueError):
    """Parity cannot run: missing or inconsistent inputs (the message says what to fix)."""


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
    trusted_key: TrustedKeyLike | None = None,
) -> ParityReport:
    """Compare every artefact listed in ``artifacts_dir/manifest.json`` with the trained model.

    ``splits`` (else loaded from ``data`` with the split settings the
    manifest's config records) and ``reference`` (else built from the model
    file) let a caller that holds them already pass them in. With
    ``trusted_key``, the manifest must be signed by it and every file match
    the signed checksums, else ``runtime.errors.SignatureError``.
    """
    started = time.perf_counter()
    model_path, artifacts_dir = Path(model_path), Path(artifacts_dir)
    if split not in SPLITS:
        raise ParityInputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    trusted_key = None if trusted_key is None else load_trusted_key(trusted_key)
    manifest = _checked_manifest(model_path, artifacts_dir, trusted_key)
    if reference is None:
        reference = trained_reference(load_trained(model_path))
    if splits is None:
        exported_with = Config.from_dict({"train": manifest.metadata.get("config", {}).get("train", {})})
        splits = splits_for(exported_with, data)
    chosen = getattr(splits, split)
    images, labels = chosen.x[:limit], chosen.y[:limit]
    progress(f"reference: {reference.name} on {len(images)} {split} images")
    expected = reference.predict_outputs(images)
    try:
        results = compare_artifacts(manifest, artifacts_dir, images, labels, expected, tolerances,
                                    progress=progress, trusted_key=trusted_key)
    except ManifestError as exc:  # a stage probe missing or altered
        raise ParityInputError(str(exc)) from exc
    return ParityReport(
        model=str(model_path),
        artifacts_dir=str(artifacts_dir),
        data=data,
        split=split,
        images=len(images),
        tolerances=tolerances.to_dict(),
        results=results,
        seconds=time.perf_counter() - started,
        versions=library_versions(),
        **reference_summary(expected["output"], labels),
    )


def _checked_manifest(model_path: Path, artifacts_dir: Path, trusted_key: TrustedKey | None = None) -> Manifest:
    """The manifest, after checking that everything it promises is there and ours (and signed, with a key)."""
    if not model_path.is_file():
        raise ParityInputError(f"model file not found: {model_path}")
    try:
        if trusted_key is None:
            manifest = load_manifest(artifacts_dir)
        else:
            manifest = load_verified_manifest(artifacts_dir, trusted_key)
    except ManifestError as exc:
        raise ParityInputError(
            f"{exc}; run 'cllnn-export convert {model_path} --out {artifacts_dir}' first"
        ) from exc
    source = manifest.metadata.get("source_model", {}).get("sha256")
    if source is not None and source != sha256_file(model_path):
        raise ParityInputError(
            f"{model_path} is not the model these artefacts were exported from (its SHA-256 "
            f"differs from the manifest's source_model); convert this model again or pass "
            f"the model the artefacts came from"
        )
    try:
        check_listed_files(manifest, artifacts_dir)
    except ManifestError as exc:
        if trusted_key is not None:
            raise SignatureError(f"a file changed after signing: {exc}") from exc
        raise ParityInputError(str(exc)) from exc
    return manifest
