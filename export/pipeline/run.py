"""``cllnn-export run``: data -> train -> convert -> parity -> benchmark -> select -> report, resumable.

``select`` is a device's ``cllnn-bench select`` on the machine the run runs on:
every file verified against the check set under the run's tolerance table,
timed at batch 1 on one thread, and the fastest (p50) within the budget, which
is the parity gate's alone (no size or latency limits), written to ``deploy/``.
The report opens with that choice.

Each stage writes under one output directory and records a key: a hash of
everything its result depends on (its config sections, the data, the library
versions, the keys of the stages before it), and the SHA-256 of every file it
wrote. A re-run skips a stage whose recorded key matches, whose outputs are
present and unchanged (each file checked against its recorded checksum) and
whose input stage did not run again, so an interrupted run resumes where it
stopped and a change redoes only what it affects; a file changed or removed
since it was written makes its stage, and those reading it, run again, and the
run says which file; ``force`` redoes all. The toolkit's own code enters the
keys only as its version: after editing it, use ``force``. A
stage's record is written only after its outputs are complete, and every output
is written atomically, so a failing stage leaves the earlier ones intact.

The run takes a resolved plan (``export.pipeline.plan``: config, formats, output layout, strategy,
all checked before any work). The layout of its directory is ``export.layout.RunLayout``. The stages
are listed in one place (``_stages``), each a function of the shared ``Work``: the data is loaded once
and the trained model's reference outputs computed once per image set, for every stage. A stage that
fails keeps the error's meaning (``export.errors.exit_code_of``): bad input stays what it is (exit 2),
a failed step becomes a ``StageError`` (exit 1).

The data enters the keys by its content (``Splits.fingerprint``, or for a shard
directory ``ShardedData.fingerprint``, its files' bytes), not its name, and every key
includes the library versions: a changed file at the same path, or an upgraded
converter, redoes what it affects. A shard directory is streamed by training; the
other stages hold only its first images of each split (``cllnn_edge.sources.head_size``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cllnn_edge.config import Config
from cllnn_edge.data import Splits
from cllnn_edge.errors import CllnnError
from cllnn_edge.model import load_trained
from cllnn_edge.shards import ShardedData
from cllnn_edge.sources import data_for, with_images_of
from cllnn_edge.train import train
from cllnn_edge.versions import library_versions
from export.checks.parity import run_parity
from export.errors import EXIT_USAGE, StageError, exit_code_of
from export.graph.reference import KerasRunner, trained_reference
from export.layout import RunLayout
from export.pipeline.convert import ConvertJob, Opened, convert
from export.pipeline.plan import Plan
from export.pipeline.sweep import sweep as sweep_variants
from export.pipeline.variants import BENCH_RUNS as SWEEP_RUNS
from export.report.build import write_report
from runtime.artifacts.manifest import sha256_file
from runtime.artifacts.opened import Artifacts
from runtime.atomic import write_json_atomic
from runtime.bench.latency import BenchReport, BenchSettings, bench_model
from runtime.deploy.choose import Budget, select
from runtime.deploy.directory import write_deploy
from runtime.errors import EdgeRuntimeError, ManifestError
from runtime.machine import cpu_info

Progress = Callable[[str], None]
BENCH_BATCHES = (1, 64)
BENCH_RUNS = {1: 200, 64: 20}  # timed calls per batch size
SELECT_SETTINGS = {"batch": 1, "threads": 1, "warmup": 10, "runs": BENCH_RUNS[1]}  # as bench's batch 1


@dataclass
class Work:
    """What the stages share: the plan, the data loaded once, the trained model's runner loaded on
    first use (after the train stage) and the artefacts opened once, both shared by the stages after."""

    plan: Plan
    data_set: Splits | ShardedData  # a shard directory stays on disk: training streams it
    splits: Splits  # what export and parity hold: the first images of each split
    progress: Progress
    artifacts: Artifacts | None = None  # convert's manifest when convert ran (passed on, not read again)

    @property
    def cfg(self) -> Config:
        return self.plan.config

    @property
    def layout(self) -> RunLayout:
        return self.plan.layout

    @functools.cached_property
    def reference(self) -> KerasRunner:
        return trained_reference(load_trained(self.layout.model))

    def opened(self) -> Artifacts:
        """The run's artefacts: convert's, else ``manifest.json`` read once (``runtime.artifacts.opened``)
        for parity, bench, select and the report."""
        if self.artifacts is None:
            self.artifacts = Artifacts.open(self.layout.manifest)
        return self.artifacts


@dataclass(frozen=True)
class Stage:
    """One step of the run: what it depends on, what it writes, how to do it."""

    name: str
    key: str  # hash of everything its result depends on
    outputs: tuple[Path, ...]  # files or directories, present when it completed; every file in them checksummed
    action: Callable[[Work], str]  # does the work; returns a one-line summary
    reads: str | None = None  # the stage whose outputs it reads: it runs again when that one ran


@dataclass
class RunState:
    """What the run did: per stage, whether it ran or was reused, its key and duration."""

    layout: RunLayout
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.layout.root

    def record(self, name: str, key: str, ran: bool, seconds: float) -> None:
        self.stages[name] = {"key": key, "ran": ran, "seconds": round(seconds, 2)}

    def ran(self, name: str | None) -> bool:
        return name is not None and self.stages[name]["ran"]


def stage_key(name: str, *parts: Any) -> str:
    """A stable hash of a stage's inputs (JSON of the parts, keys sorted)."""
    payload = json.dumps([name, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def run_pipeline(plan: Plan, *, force: bool = False, sweep: bool = False,
                 progress: Progress = lambda line: None) -> RunState:
    """Run every stage of ``plan`` (a ``run`` plan: its ``out`` holds the run) that is not already done
    with the same inputs, then write the report; ``sweep``: the precision sweep too
    (``export.pipeline.sweep``, default variants, into ``sweep/``). The plan's strategy is how the
    train stage trains; the trained model does not depend on it beyond noise, so no key holds it."""
    layout, cfg = plan.layout, plan.config
    source = plan.source
    data_set = data_for(cfg, source)  # everything else was checked when the plan was made
    layout.root.mkdir(parents=True, exist_ok=True)
    state = RunState(layout)
    data_summary = {**data_set.summary(), "fingerprint": data_set.fingerprint()}
    progress(f"data: {source}: train {data_summary['train']}, val {data_summary['val']}, "
             f"test {data_summary['test']} (fingerprint {data_summary['fingerprint'][:12]})")
    work = Work(plan, data_set, with_images_of(data_set, cfg), progress)
    for stage in _stages(cfg, layout, data_summary["fingerprint"], sweep=sweep):
        _run_stage(stage, work, state, force)
    started = time.perf_counter()
    write_report(layout, state.stages, data_summary, manifest=work.opened().manifest)
    progress(f"report: done in {time.perf_counter() - started:.1f} s: {layout.report_html}")
    return state


def _stages(cfg: Config, layout: RunLayout, fingerprint: str, *, sweep: bool) -> tuple[Stage, ...]:
    """The run's stages in order, each keyed by what its result depends on."""
    sections, versions = cfg.to_dict(), library_versions()
    tolerances = sections["tolerances"]
    train_key = stage_key("train", sections["model"], sections["train"], fingerprint, versions)
    # the device's runtime changes the files only when one is named: an unpinned run keeps its key
    convert_key = stage_key("convert", train_key, sections["export"],
                            *([sections["target"]] if cfg.target.runtime else []))
    bench_key = stage_key("bench", convert_key, BENCH_BATCHES, BENCH_RUNS)
    stages = [
        Stage("train", train_key, (layout.train_dir,), _train),
        Stage("convert", convert_key, (layout.artifacts, layout.manifest), _convert, reads="train"),
        Stage("parity", stage_key("parity", convert_key, tolerances), (layout.parity_json, layout.parity_junit),
              _parity, reads="convert"),
        Stage("bench", bench_key, (layout.bench,), _bench, reads="convert"),
        # the choice is this machine's: its CPU enters the key; deploy/ is absent when nothing fits,
        # so such a stage runs again each time (it takes seconds); it ranks by bench's batch-1 timing
        Stage("select", stage_key("select", bench_key, tolerances, SELECT_SETTINGS, _machine()),
              (layout.selection, layout.deploy, layout.deploy_selection), _select, reads="bench"),
    ]
    if sweep:  # last: the main files are checked and chosen whatever the sweep finds
        stages.append(Stage("sweep", stage_key("sweep", convert_key, tolerances, SWEEP_RUNS, _machine()),
                            (layout.sweep,), _sweep, reads="train"))
    return tuple(stages)


def _run_stage(stage: Stage, work: Work, state: RunState, force: bool) -> None:
    progress = work.progress
    record_file = state.layout.stage_record(stage.name)
    record = _read_record(record_file)
    done = record is not None and record.get("key") == stage.key
    if done and not force and not state.ran(stage.reads) and all(p.exists() for p in stage.outputs):
        changed = _changed_output(state.layout.root, record["files"])
        if changed is None:
            progress(f"{stage.name}: reused (inputs unchanged, key {stage.key}; "
                     f"{len(record['files'])} files match their checksums)")
            state.record(stage.name, stage.key, False, 0.0)
            return
        progress(f"{stage.name}: {changed}; running again")
    record_file.unlink(missing_ok=True)
    progress(f"{stage.name}: running")
    started = time.perf_counter()
    try:
        summary = stage.action(work)
    except CllnnError as exc:
        if isinstance(exc, StageError) or exit_code_of(exc) == EXIT_USAGE:  # bad input: the caller's to fix
            raise
        raise StageError(
            f"stage {stage.name!r} failed: {exc} (earlier stages are kept in {state.out})"
        ) from exc
    files = _checksums(state.layout.root, stage.outputs)
    write_json_atomic(record_file, {"stage": stage.name, "key": stage.key, "files": files})
    seconds = time.perf_counter() - started
    state.record(stage.name, stage.key, True, seconds)
    progress(f"{stage.name}: done in {seconds:.1f} s: {summary}")


def _read_record(path: Path) -> dict[str, Any] | None:
    """A stage's record, or None when absent or not one this module wrote (the stage then runs)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return None
    return record


def _checksums(root: Path, outputs: tuple[Path, ...]) -> dict[str, str]:
    """SHA-256 of every file a stage wrote (directories walked), keyed by its path under ``root``."""
    files: set[Path] = set()
    for output in outputs:
        if output.is_dir():
            files.update(p for p in output.rglob("*") if p.is_file())
        elif output.is_file():
            files.add(output)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(files)}


def _changed_output(root: Path, recorded: dict[str, str]) -> str | None:
    """Why a stage's outputs are not what it wrote (the first file that differs), or None."""
    for name, digest in sorted(recorded.items()):
        path = root / name
        if not path.is_file():
            return f"{name} is missing since it was written"
        if sha256_file(path) != digest:
            return f"{name} changed since it was written (checksum)"
    return None


def _train(work: Work) -> str:
    result = train(work.cfg, work.data_set, work.layout.train_dir, progress=work.progress,
                   strategy=work.plan.training_strategy)
    final = result.history["final"]
    return f"val accuracy {final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}"


def _convert(work: Work) -> str:
    layout = work.layout
    job = ConvertJob(layout.model, layout.artifacts, work.cfg, work.plan.formats, work.plan.budget,
                     opened=Opened(work.reference, work.splits), runtime=work.plan.runtime)
    report = convert(job, work.progress)
    work.artifacts = Artifacts.written(layout.artifacts, report.manifest)  # passed on, not read again
    if not report:
        failed = [r.format.name for r in report.results if not r.passed]
        raise StageError(
            f"stage 'convert' failed: formats failed to convert or failed their checks: {failed} "
            f"(see {layout.manifest}; the trained model is kept)"
        )
    count = len(report.results)
    return f"{count} {'format' if count == 1 else 'formats'} exported and checked"


def _parity(work: Work) -> str:
    layout = work.layout
    report = run_parity(layout.model, work.opened(), data=work.plan.source, splits=work.splits,
                        reference=work.reference, tolerances=work.cfg.tolerances, progress=work.progress)
    report.save_json(layout.parity_json)
    report.save_junit(layout.parity_junit)
    passed = sum(r.passed for r in report.results)
    return f"{passed}/{len(report.results)} formats within tolerance on {report.images} images"


def _bench(work: Work) -> str:
    layout, artifacts = work.layout, work.opened()
    # A file that takes one image per call (a TFLM file's batch is 1) is timed at batch 1 only: at a
    # larger batch it would make that many batch-1 calls, which says nothing more.
    jobs = [(batch, entry) for batch in BENCH_BATCHES for entry in artifacts.manifest.artifacts
            if batch == 1 or entry.inputs[0].shape[0] != 1]
    results = []
    for index, (batch, entry) in enumerate(jobs, start=1):
        settings = BenchSettings(batch=batch, threads=1, warmup=10, runs=BENCH_RUNS[batch])
        result = dataclasses.replace(bench_model(artifacts.file(entry.file), settings), export_format=entry.format)
        results.append(result)
        work.progress(f"[{index}/{len(jobs)}] {entry.format:<15} batch {batch:<3} {settings.runs} runs: "
                      f"p50 {result.p50_us:,.0f} us, {result.throughput_ips:,.0f} images/s")
    settings = {"threads": 1, "warmup": 10, "runs": {str(b): n for b, n in BENCH_RUNS.items()},
                "images": "random uint8"}
    BenchReport.measured_here(settings, results).save_json(layout.bench)
    best = min((r for r in results if r.batch == 1), key=lambda r: r.p50_us)
    return f"fastest at batch 1: {best.export_format} p50 {best.p50_us:,.0f} us"


def _sweep(work: Work) -> str:
    layout, plan = work.layout, work.plan
    command = ["cllnn-export", "sweep", str(layout.model), "--out", str(layout.sweep), "--data", work.plan.source]
    command += ["--config", str(plan.config_file)] if plan.config_file is not None else []
    result = sweep_variants(layout.model, layout.sweep, work.cfg, data=work.plan.source, splits=work.splits,
                            reference=work.reference, command=shlex.join(command), progress=work.progress)
    front = [r.name for r in result.rows if r.on_pareto_front]
    return f"{len(result.rows)} variants; Pareto front: {', '.join(front) or 'none'}"


def _machine() -> dict[str, Any]:
    return cpu_info().record()


def _select(work: Work) -> str:
    """``cllnn-bench select`` on this machine, under the run's tolerance table and no further budget,
    ranking by the bench stage's batch-1 timing (same settings) rather than timing the files again."""
    layout, artifacts = work.layout, work.opened()
    try:
        timings = BenchReport.load_json(layout.bench).timings(SELECT_SETTINGS["batch"], cpu_info())
        selection = select(artifacts, Budget(), BenchSettings(**SELECT_SETTINGS),
                           tolerances=work.cfg.tolerances, progress=work.progress, timings=timings)
        if selection:
            write_deploy(selection, artifacts, layout.deploy)
        else:  # an earlier run's choice must not outlive this one's verdict
            shutil.rmtree(layout.deploy, ignore_errors=True)
    except ManifestError:  # the artefacts' manifest is malformed, or names or lists files wrongly: an input error
        raise
    except EdgeRuntimeError as exc:
        raise StageError(f"stage 'select' failed: {exc} (earlier stages are kept in {layout.root})") from exc
    selection.save_json(layout.selection)
    chosen = selection.chosen
    if chosen is None:
        return f"no file to deploy: {selection.verdict}"
    return f"deploy/{chosen.file}: p50 {chosen.p50_us:,.0f} us, {selection.verdict}"
