"""``convert``: trained model.keras -> unrolled, converted, checked artefacts + manifest.json.

Steps: load and unroll the trained model; prove the unrolled graph equivalent
on real images; export it once as a SavedModel into a private work directory;
convert each format in its own worker process (a converter crash fails that
format only); load every file through ``runtime`` (the code a device runs)
and check it against the trained model; move the files into place and write
the manifest last. Each format's worker also converts the *stage probe* (the
same graph with one output per stage, ``export.unroll.STAGES``) with the same
settings into ``probes/<file>``, recorded as ``details["probe"]`` of the
artefact's manifest entry (``{"error": ...}`` if only the probe failed). Each file is renamed into place whole, so an interrupted
run leaves no half-written artefact; the work directory is always removed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cllnn_edge.atomic import write_json_atomic
from cllnn_edge.config import Config
from cllnn_edge.data import splits_for
from cllnn_edge.model import load_trained
from cllnn_edge.versions import library_versions
from export.describe import PROBES_DIR, describe_artifact, describe_probe
from export.errors import ConversionError, ExportError
from export.formats import Format, parse_formats
from export.isolate import Job, run_isolated
from export.unroll import check_equivalence, unroll

from runtime.manifest import MANIFEST_NAME, ArtifactEntry, Manifest, sha256_file

INT8_VARIANT_ATOL = 1e-3  # the bounded-range graph int8 formats are calibrated on
Progress = Callable[[str], None]


@dataclass(frozen=True)
class FormatResult:
    """How one format fared: its manifest entry, or why it has none."""

    format: Format
    entry: ArtifactEntry | None
    seconds: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.entry is not None and all(
            check["passed"] for check in self.entry.details.get("checks", {}).values()
        )


@dataclass(frozen=True)
class ConvertReport:
    """Everything ``convert`` did; truthy when every format exported and passed its checks."""

    out_dir: Path
    results: tuple[FormatResult, ...]
    manifest: Manifest
    equivalence: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return all(r.passed for r in self.results)


def convert(
    model_path: str | Path,
    out_dir: str | Path,
    cfg: Config,
    *,
    data: str | None = None,
    progress: Progress = lambda line: None,
) -> ConvertReport:
    """Export ``model_path`` to every format in ``cfg.export.formats`` under ``out_dir``."""
    formats = parse_formats(",".join(cfg.export.formats))
    out_dir = _writable_dir(Path(out_dir))
    model_path = Path(model_path)
    trained = load_trained(model_path)
    source = data or _training_source(model_path)
    splits = splits_for(cfg, source)
    calibration = splits.train.x[: cfg.export.calibration_size]
    check_images = splits.test.x[: cfg.export.check_size]

    progress(f"unroll: {trained.name} -> static graph")
    result = unroll(trained)
    equivalence = check_equivalence(trained, result, check_images)
    removed = result.removed_summary()
    progress(
        f"unroll: equivalent on {len(check_images)} test images (max abs "
        f"{equivalence['output']:.1e}); left out {removed['weight_bytes']:,} weight bytes, "
        f"{removed['macs_per_image']:,} MACs per image"
    )
    reference = trained.predict(check_images.astype(np.float32)[..., None], verbose=0, batch_size=256)
    int8_variant: dict[str, object] = {}
    if cfg.export.int8_bounded_ranges and any(f.precision == "int8" for f in formats):
        bounded = unroll(trained, int8_ranges=True)
        deviation = check_equivalence(trained, bounded, check_images, atol=INT8_VARIANT_ATOL)
        int8_variant = {"graph": bounded.model, "probe": bounded.probe,
                        "max_abs_vs_trained": deviation}
        progress(f"unroll: int8 graph with bounded ranges, max abs {deviation['output']:.1e} "
                 f"from the trained model")

    for stale in out_dir.glob(".work-*"):  # left by a run that was killed (one convert per dir)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
    try:
        saved_models = {"float": work / "saved_model", "float_probe": work / "saved_model_probe"}
        result.model.export(str(saved_models["float"]), verbose=False)
        result.probe.export(str(saved_models["float_probe"]), verbose=False)
        if int8_variant:
            saved_models["int8"] = work / "saved_model_int8"
            saved_models["int8_probe"] = work / "saved_model_int8_probe"
            int8_variant.pop("graph").export(str(saved_models["int8"]), verbose=False)
            int8_variant.pop("probe").export(str(saved_models["int8_probe"]), verbose=False)
        (work / PROBES_DIR).mkdir()
        calibration_file = work / "calibration.npy"
        np.save(calibration_file, calibration)
        results = _convert_all(
            formats, cfg, work, saved_models, calibration_file, check_images, reference, progress
        )
        entries = []
        for item in results:
            if item.entry is not None:
                probe = item.entry.details.get("probe", {})
                if "file" in probe:
                    (out_dir / PROBES_DIR).mkdir(exist_ok=True)
                    (work / probe["file"]).replace(out_dir / probe["file"])
                (work / item.entry.file).replace(out_dir / item.entry.file)
                entries.append(item.entry)
        manifest = Manifest(
            artifacts=tuple(entries),
            metadata={
                "source_model": {"file": str(model_path), "sha256": sha256_file(model_path)},
                "config": cfg.to_dict(),
                "data": {**splits.summary(), "calibration_images": len(calibration),
                         "check_images": len(check_images)},
                "unroll": {**removed, "equivalence_max_abs": equivalence},
                "int8_graph": int8_variant,
                "failed": {r.format.name: r.error for r in results if r.error},
                "versions": library_versions(),
            },
        )
        write_json_atomic(out_dir / MANIFEST_NAME, manifest.to_dict())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ConvertReport(out_dir=out_dir, results=tuple(results), manifest=manifest,
                         equivalence=equivalence)


def _convert_all(
    formats: tuple[Format, ...],
    cfg: Config,
    work: Path,
    saved_models: dict[str, Path],
    calibration: Path,
    check_images: np.ndarray,
    reference: np.ndarray,
    progress: Progress,
) -> list[FormatResult]:
    """Convert each format in its own process; int8 ones from the bounded-range graph."""
    results = []
    for index, fmt in enumerate(formats, start=1):
        started = time.perf_counter()
        calibrating = (f" (calibrating on {cfg.export.calibration_size} training images)"
                       if fmt.precision == "int8" else "")
        progress(f"[{index}/{len(formats)}] {fmt.name:<15} converting{calibrating}")
        target = work / fmt.file
        probe = work / PROBES_DIR / fmt.file
        graph = "int8" if fmt.precision == "int8" and "int8" in saved_models else "float"
        saved_model, probe_saved_model = saved_models[graph], saved_models[f"{graph}_probe"]
        try:
            if fmt.name == "onnx-int8":  # quantize a float ONNX of the bounded-range graph
                float_onnx = work / "int8_graph_float.onnx"
                float_probe = work / PROBES_DIR / "int8_graph_float.onnx"
                first = run_isolated(_job("onnx-fp32", float_onnx, cfg, saved_model, calibration,
                                          probe=(float_probe, probe_saved_model, None)))
                done = run_isolated(_job(fmt.name, target, cfg, saved_model, calibration, float_onnx,
                                         probe=None if first.probe_error else
                                         (probe, None, float_probe)))
                probe_error = first.probe_error or done.probe_error
            else:
                done = run_isolated(_job(fmt.name, target, cfg, saved_model, calibration,
                                         probe=(probe, probe_saved_model, None)))
                probe_error = done.probe_error
            entry = describe_artifact(fmt, target, check_images, reference)
            probe_details = (
                {"error": probe_error} if probe_error else describe_probe(probe, work, check_images)
            )
            entry = replace(entry, details={**entry.details, "probe": probe_details})
            item = FormatResult(fmt, entry, time.perf_counter() - started)
        except ConversionError as exc:
            item = FormatResult(fmt, None, time.perf_counter() - started, error=str(exc))
        results.append(item)
        progress(_progress_line(index, len(formats), item))
    return results


def _job(
    name: str, out: Path, cfg: Config, saved_model: Path, calibration: Path,
    float_onnx: Path | None = None,
    probe: tuple[Path, Path | None, Path | None] | None = None,
) -> Job:
    """``probe``: (probe file, probe SavedModel, probe float ONNX), converted in the same worker."""
    probe_out, probe_saved_model, probe_float_onnx = probe or (None, None, None)
    return Job(
        format=name,
        out=str(out),
        saved_model=str(saved_model),
        calibration=str(calibration),
        float_onnx=None if float_onnx is None else str(float_onnx),
        opset=cfg.export.onnx_opset,
        per_channel=cfg.export.onnx_per_channel,
        probe_out=None if probe_out is None else str(probe_out),
        probe_saved_model=None if probe_saved_model is None else str(probe_saved_model),
        probe_float_onnx=None if probe_float_onnx is None else str(probe_float_onnx),
    )


def _progress_line(index: int, total: int, item: FormatResult) -> str:
    head = f"[{index}/{total}] {item.format.name:<15}"
    if item.entry is None:
        return f"{head} FAILED ({item.seconds:.1f} s): {item.error}"
    verdict = "ok" if item.passed else "CHECK FAILED"
    return f"{head} {verdict:<12} {item.entry.size / 1024:8.1f} KiB  {item.seconds:5.1f} s"


def _writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove it writable before any expensive work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ExportError(f"output directory {path} cannot be written: {exc.strerror or exc}") from exc
    return path


def _training_source(model_path: Path) -> str:
    """The data source the model was trained on (from history.json beside it), else embedded."""
    import json

    history = model_path.with_name("history.json")
    try:
        return str(json.loads(history.read_text())["data"]["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return "embedded"

