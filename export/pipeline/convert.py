"""``convert``: trained model.keras -> unrolled, converted, checked artefacts + manifest.json.

A ``ConvertJob`` says what to convert (model file, output directory, config, formats, images);
``convert(job, progress)`` does it. Steps: load and unroll the trained model (the graph variants
the formats need, ``export.pipeline.graphs``); prove each unrolled graph equivalent
on real images; export it once as a SavedModel into a private work directory;
convert each format in its own worker process (a converter crash fails that
format only), several at once on a machine with several cores; load every
file through ``runtime`` (the code a device runs) and check it against the
trained model; move the files into place and write the manifest last. Each
format's worker also converts the *stage probe* (the same graph with one
named output per stage, ``export.graph.reference.STAGES``) with the same settings
into ``probes/<file>``, recorded as the ``probe`` of the artefact's manifest
details (with an error instead if only the probe failed). Beside the files,
``check_set.npz`` keeps ``export.check_set_size`` test images, their labels
and the trained model's stage outputs on them (``runtime.artifacts.checkset``), listed
in the manifest's ``check_set`` with its SHA-256, so a device can verify the
files without TensorFlow (``cllnn-bench verify``). Each file is
renamed into place whole, so an interrupted run leaves no half-written
artefact; the work directory is always removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cllnn_edge.config import Config
from cllnn_edge.data import Splits
from cllnn_edge.model import load_trained
from cllnn_edge.sources import splits_for
from cllnn_edge.train_files import HISTORY_FILE
from cllnn_edge.versions import library_versions
from export.checks.describe import PROBES_DIR, describe_artifact, describe_probe
from export.errors import ConversionError, ExportError
from export.formats.registry import Format, calibration_for, formats_for
from export.formats.isolate import PER_CHANNEL_DENSE_OP, Job, run_isolated
from export.formats.mcu import memory_budget, with_mcu_record
from export.formats.precision import MINMAX, Calibration, ai_edge_recipe
from export.graph.reference import KerasRunner, trained_reference
from export.pipeline.graphs import Graphs, Unrolled, export_graphs, stage_max_abs, unroll_all
from export.targets.runtime_pin import RuntimePin
from runtime.artifacts.compat import needs_of_tflite
from runtime.atomic import write_json_atomic
from runtime.deploy.boards import MemoryBudget
from runtime.artifacts.checkset import CHECK_SET_NAME, CheckSet, write_check_set
from runtime.artifacts.manifest import (
    LITERT,
    MANIFEST_NAME,
    ArtifactEntry,
    CheckSetRecord,
    Manifest,
    ProbeRecord,
    sha256_file,
)
from runtime.outputs import OutputPathError, check_output_dir

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FormatResult:
    """How one format fared: its manifest entry, or why it has none."""

    format: Format
    entry: ArtifactEntry | None
    seconds: float
    error: str | None = None
    cannot_load: str | None = None  # why the job's runtime (``ConvertJob.runtime``) cannot load the file

    @property
    def passed(self) -> bool:
        return self.entry is not None and self.entry.details.passed


@dataclass(frozen=True)
class ConvertReport:
    """Everything ``convert`` did; truthy when every format exported and passed its checks."""

    out_dir: Path
    results: tuple[FormatResult, ...]
    manifest: Manifest

    def __bool__(self) -> bool:
        return all(r.passed for r in self.results)


@dataclass(frozen=True)
class Opened:
    """The trained model's runner and the images a conversion calibrates and checks on, as a caller
    already holds them (the pipeline and the sweep share them with parity)."""

    reference: KerasRunner
    splits: Splits


@dataclass(frozen=True)
class ConvertJob:
    """One conversion as its caller asks for it: the trained model file, where the files go, the
    config, the formats (registry entries) and microcontroller budget as the caller resolved them (a
    command's plan; ``from_config`` for a library caller) and the images: ``opened`` when the caller
    holds them and the model's runner, else the model file is loaded and the images read from ``data``
    (None: the source the model was trained on)."""

    model_path: Path
    out_dir: Path
    cfg: Config
    formats: tuple[Format, ...]
    budget: MemoryBudget | None  # what the TFLM files must fit; None: no board or limits given
    data: str | None = None
    opened: Opened | None = None
    runtime: RuntimePin | None = None  # the device's runtime release: the files are made to load on it

    @property
    def per_channel_dense(self) -> bool:
        """Whether the runtime loads dynamic-range dense layers with per-channel weights (compat's table)."""
        op, version = PER_CHANNEL_DENSE_OP
        return self.runtime is None or self.runtime.refusal(needs_of_tflite({op: (version,)})) is None

    @classmethod
    def from_config(cls, model_path: Path, out_dir: Path, cfg: Config, *, formats: tuple[Format, ...] | None = None,
                    data: str | None = None, opened: Opened | None = None,
                    runtime: RuntimePin | None = None) -> ConvertJob:
        """The job with ``cfg``'s formats (unless ``formats`` are given: a sweep's variants), budget and
        ``[target] runtime`` (unless ``runtime`` is given) resolved here; an unknown format, board or
        runtime fails here, before any work."""
        if runtime is None and cfg.target.runtime:
            runtime = RuntimePin.parse(cfg.target.runtime, "[target] runtime")
        return cls(Path(model_path), Path(out_dir), cfg, formats_for(cfg) if formats is None else formats,
                   memory_budget(cfg), data=data, opened=opened, runtime=runtime)


def convert(job: ConvertJob, progress: Progress = lambda line: None) -> ConvertReport:
    """Export ``job.model_path`` to each of the job's formats under ``job.out_dir``. The trained
    model's outputs on the check images are computed once, for every comparison."""
    cfg, formats, budget = job.cfg, job.formats, job.budget
    calibrations = {f.name: calibration_for(f, cfg) for f in formats if f.calibrated}
    out_dir, model_path = _writable_dir(Path(job.out_dir)), Path(job.model_path)
    reference, splits = _opened(job, model_path)
    # a small data set calibrates on what it has: the manifest records the images really used
    calibrations = {name: replace(c, images=min(c.images, len(splits.train)))
                    for name, c in calibrations.items()}
    calibration = splits.train.x[: max((c.images for c in calibrations.values()), default=0)]
    check_images = splits.test.x[: cfg.export.check_size]
    unrolled = unroll_all(reference, formats, cfg, check_images, progress)
    for stale in out_dir.glob(".work-*"):  # left by a run that was killed (one convert per dir)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
    try:
        graphs = export_graphs(work, unrolled.graphs)
        (work / PROBES_DIR).mkdir()
        calibration_file = work / "calibration.npy"
        np.save(calibration_file, calibration)
        expected = reference.predict_outputs(check_images)
        checker = _Checker(cfg, work, check_images, expected, progress, budget, job.runtime, job.per_channel_dense)
        results = _convert_all(formats, cfg, graphs, calibration_file, checker, calibrations)
        entries = [_move_into_place(item.entry, work, out_dir) for item in results if item.entry]
        check_set = _write_check_set(out_dir, splits, cfg.export.check_set_size, reference, expected)
        data = {**splits.summary(), "calibration_images": len(calibration), "check_images": len(check_images)}
        manifest = Manifest(artifacts=tuple(entries), check_set=check_set,
                            metadata=_metadata(model_path, cfg, data, unrolled, results, job.runtime))
        write_json_atomic(out_dir / MANIFEST_NAME, manifest.to_dict())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ConvertReport(out_dir=out_dir, results=tuple(results), manifest=manifest)


def _opened(job: ConvertJob, model_path: Path) -> tuple[KerasRunner, Splits]:
    """The job's trained-model runner and images: the caller's, or opened from the files."""
    if job.opened is not None:
        return job.opened.reference, job.opened.splits
    reference = trained_reference(load_trained(model_path))
    return reference, splits_for(job.cfg, job.data or training_source(model_path))


def _metadata(
    model_path: Path, cfg: Config, data: dict[str, Any], unrolled: Unrolled, results: list[FormatResult],
    runtime: RuntimePin | None = None,
) -> dict[str, Any]:
    """The manifest's record of what the files were made from and how; with a runtime, which formats
    it cannot load and why (``runtime``)."""
    pinned = {} if runtime is None else {"runtime": {
        **runtime.to_dict(), "cannot_load": {r.format.name: r.cannot_load for r in results if r.cannot_load}}}
    return {
        **pinned,
        "source_model": {"file": str(model_path), "sha256": sha256_file(model_path)},
        "config": cfg.to_dict(),
        "data": data,
        "unroll": {**unrolled.removed, "equivalence_max_abs": stage_max_abs(unrolled.equivalence)},
        "int8_graph": unrolled.int8_graph,
        "failed": {r.format.name: r.error for r in results if r.error},
        "versions": library_versions(),
    }


def _write_check_set(
    out_dir: Path, splits: Splits, size: int, reference: KerasRunner, expected: dict[str, np.ndarray]
) -> CheckSetRecord:
    """The first ``size`` test images (the split parity uses), their labels and the trained
    model's stage outputs on them, for a device's ``cllnn-bench verify``. ``expected`` (the
    outputs on the first ``check_size`` test images, computed once for every check) covers
    them unless the check set is the larger; the trained model then runs on it too."""
    images, labels = splits.test.x[:size], splits.test.y[:size]
    if len(images) <= len(expected["output"]):
        outputs = {stage: values[: len(images)] for stage, values in expected.items()}
    else:
        outputs = reference.predict_outputs(images)
    check_set = CheckSet(images=images, labels=labels, reference=outputs)
    return write_check_set(out_dir / CHECK_SET_NAME, check_set, source=splits.source, split="test")


def _move_into_place(entry: ArtifactEntry, work: Path, out_dir: Path) -> ArtifactEntry:
    probe = entry.details.probe
    beside = [probe.file] if probe is not None and probe.file is not None else []
    beside += [source.file for source in entry.details.mcu.sources] if entry.details.mcu else []
    for name in beside:
        (out_dir / name).parent.mkdir(exist_ok=True)
        (work / name).replace(out_dir / name)
    (work / entry.file).replace(out_dir / entry.file)
    return entry


@dataclass(frozen=True)
class _Checker:
    """What each format's conversion is checked against, once it is written."""

    cfg: Config
    work: Path
    images: np.ndarray
    reference: dict[str, np.ndarray]  # the trained model's outputs on ``images``
    progress: Progress
    budget: MemoryBudget | None  # what a microcontroller file must fit ([export] board, flash_kib, ram_kib)
    runtime: RuntimePin | None = None  # each file is checked against it (``FormatResult.cannot_load``)
    per_channel_dense: bool = True  # ``ConvertJob.per_channel_dense``


def _convert_all(
    formats: tuple[Format, ...], cfg: Config, graphs: Graphs, calibration: Path, checker: _Checker,
    calibrations: dict[str, Calibration],
) -> list[FormatResult]:
    """Convert each format in its own process, ``conversion_workers(cfg)`` at a time; results
    in the order of ``formats``. A converter is mostly single-threaded, so on a machine with
    several cores the formats convert side by side."""

    def one(index: int, fmt: Format) -> FormatResult:
        item = _convert_one(fmt, f"[{index}/{len(formats)}] {fmt.name:<15}", cfg, graphs, calibration,
                            checker, calibrations.get(fmt.name))
        checker.progress(_progress_line(f"[{index}/{len(formats)}] {fmt.name:<15}", item))
        return item

    with ThreadPoolExecutor(max_workers=conversion_workers(cfg)) as pool:
        futures = [pool.submit(one, index, fmt) for index, fmt in enumerate(formats, start=1)]
        return [future.result() for future in futures]


def conversion_workers(cfg: Config) -> int:
    """How many formats convert at once: ``export.workers``, or one per usable CPU core."""
    if cfg.export.workers:
        return cfg.export.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _convert_one(
    fmt: Format, head: str, cfg: Config, graphs: Graphs, calibration: Path, checker: _Checker,
    settings: Calibration | None,
) -> FormatResult:
    started = time.perf_counter()
    calibrating = (f" (calibrating on {settings.images} training images, {settings.method})"
                   if settings else "")
    checker.progress(f"{head} converting{calibrating}")
    target, probe = checker.work / fmt.file, checker.work / PROBES_DIR / fmt.file
    source, probe_source, float_layers = graphs.for_format(fmt)
    job = Job(format=fmt.converter, source=str(source), out=str(target), calibration=str(calibration),
              calibration_images=settings.images if settings else None,
              calibration_method=settings.method if settings else MINMAX,
              opset=cfg.export.onnx_opset, per_channel=cfg.export.onnx_per_channel,
              float_layers=float_layers, recipe=fmt.recipe.precisions if fmt.recipe else None,
              probe_source=str(probe_source), probe_out=str(probe), per_channel_dense=checker.per_channel_dense)
    try:
        done = run_isolated(job)
        entry = describe_artifact(fmt, target, checker.images, checker.reference,
                                  cfg.tolerances[fmt.precision])
        if fmt.for_mcu:
            entry = with_mcu_record(entry, target, checker.work, checker.budget)
    except ConversionError as exc:
        return FormatResult(fmt, None, time.perf_counter() - started, error=str(exc))
    probe_record = (ProbeRecord(error=done.probe_error) if done.probe_error
                    else describe_probe(probe, checker.work, checker.images))
    entry = replace(entry, details=replace(entry.details, probe=probe_record,
                                           quantization=quantization_record(fmt, settings, graphs)))
    refused = None if checker.runtime is None or entry.needs is None else checker.runtime.refusal(entry.needs)
    cannot_load = None if refused is None else f"cannot load on {checker.runtime}: {refused}"
    return FormatResult(fmt, entry, time.perf_counter() - started, cannot_load=cannot_load)


def quantization_record(fmt: Format, settings: Calibration | None, graphs: Graphs) -> dict[str, Any]:
    """What the manifest keeps of how a file was quantized, enough to build it again: the graph,
    the calibration and, for a recipe, its stages and the rules AI Edge Quantizer applied."""
    record: dict[str, Any] = {"graph": graphs.kind_for(fmt)}
    if settings is not None:
        record["calibration"] = settings.to_dict()
    if fmt.recipe is not None:
        record["recipe"] = {"stages": fmt.recipe.to_dict()}
        if fmt.runtime == LITERT:
            record["recipe"]["ai_edge_quantizer"] = ai_edge_recipe(fmt.recipe)
    return record


def _progress_line(head: str, item: FormatResult) -> str:
    if item.entry is None:
        return f"{head} FAILED ({item.seconds:.1f} s): {item.error}"
    verdict = "ok" if item.passed else "CHECK FAILED"
    line = f"{head} {verdict:<12} {item.entry.size / 1024:8.1f} KiB  {item.seconds:5.1f} s"
    return line + (f"; {item.cannot_load}" if item.cannot_load else "")


def _writable_dir(path: Path) -> Path:
    """Prove ``path`` can be a writable directory (``runtime.outputs``), then create it, before any
    expensive work."""
    try:
        check_output_dir(path)
        path.mkdir(parents=True, exist_ok=True)
    except OutputPathError as exc:
        raise ExportError(str(exc)) from exc
    except OSError as exc:
        raise ExportError(f"output directory {path} cannot be written: {exc.strerror or exc}") from exc
    return path


def training_source(model_path: Path) -> str:
    """The data source the model was trained on (from history.json beside it), else embedded."""
    history = model_path.with_name(HISTORY_FILE)
    try:
        return str(json.loads(history.read_text())["data"]["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return "embedded"
