"""``cllnn-export run``: data -> train -> convert -> parity -> benchmark -> select -> [devices] -> report,
resumable.

``select`` is a device's ``cllnn-bench select`` on the machine the run runs on:
every file verified against the check set under the run's tolerance table,
timed at batch 1 on one thread, and the fastest (p50) within the budget, which
is the parity gate's alone (no size or latency limits), written to ``deploy/``.
The report opens with that choice. With ``--target NAME=TARGET`` (``Plan.targets``), one more stage
per device after those: ``cllnn-export target run`` there (``export.targets.remote_run``: the
device's own verify, bench and select), into ``devices/NAME/``. A device that fails does not stop
the others or the report (it shows the devices that answered); the run then ends with that
device's error.

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
are listed in one place (``_stages``; how one is keyed, skipped, run and recorded is
``export.pipeline.stages``), each a function of the shared ``Work``: the data is loaded once
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
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from export.errors import StageError
from export.graph.reference import KerasRunner, trained_reference
from export.layout import RunLayout
from export.pipeline.convert import ConvertJob, Opened, convert
from export.pipeline.plan import Plan
from export.pipeline.stages import RunState, Stage, run_stage, stage_key
from export.pipeline.sweep import sweep as sweep_variants
from export.pipeline.variants import BENCH_RUNS as SWEEP_RUNS
from export.report.build import write_report
from export.targets.remote_run import run_on_target
from export.targets.spec import TargetSpec
from runtime.artifacts.opened import Artifacts
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
    stages = _stages(cfg, layout, data_summary["fingerprint"], sweep=sweep)
    for stage in stages:
        run_stage(stage, work, state, force, work.progress)
    convert_key = next(stage.key for stage in stages if stage.name == "convert")
    failed = _run_devices(_device_stages(plan, convert_key), work, state, force)
    started = time.perf_counter()
    write_report(layout, state.stages, data_summary, manifest=work.opened().manifest)
    progress(f"report: done in {time.perf_counter() - started:.1f} s: {layout.report_html}")
    if failed:
        raise failed[0]
    return state


def _stages(cfg: Config, layout: RunLayout, fingerprint: str, *, sweep: bool) -> tuple[Stage, ...]:
    """The run's stages in order, each keyed by what its result depends on."""
    sections, versions = cfg.to_dict(), library_versions()
    tolerances = sections["tolerances"]
    train_key = stage_key("train", sections["model"], sections["train"], fingerprint, versions)
    # the device's runtime changes the files only when one is named: an unpinned run keeps its key
    convert_key = stage_key("convert", train_key, sections["export"],
                            *([{"runtime": cfg.target.runtime}] if cfg.target.runtime else []))
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


def _device_stages(plan: Plan, convert_key: str) -> tuple[Stage, ...]:
    """One stage per ``--target``: its key holds what the device checks the files against (the files,
    the tolerances), the target, the runtime release pinned for it (``--runtime``, which the device
    then runs: the host's own stages keep the verified versions) and the formats it takes
    (``--target-formats``; all: none, so such a stage keeps its key). What the device itself is (probed
    when the stage runs) does not enter it, so after a change on the device, ``force`` runs it again."""
    tolerances, pin, formats = plan.config.to_dict()["tolerances"], plan.runtime, plan.target_formats
    return tuple(Stage(f"device-{name}", stage_key("device", convert_key, tolerances, spec.text,
                                                    *([pin.to_dict()] if pin is not None else []),
                                                    *([{"formats": list(formats)}] if formats is not None else [])),
                       (plan.layout.device(name),), functools.partial(_device, name, spec), reads="convert")
                 for name, spec in plan.targets)


def _run_devices(stages: tuple[Stage, ...], work: Work, state: RunState, force: bool) -> list[CllnnError]:
    """Each device's stage in turn; one that fails is said, its earlier results are removed (they may
    be of other files: the report must not show them as this run's), and the next one still runs."""
    failed: list[CllnnError] = []
    for stage in stages:
        try:
            run_stage(stage, work, state, force, work.progress)
        except CllnnError as exc:
            for output in stage.outputs:
                shutil.rmtree(output, ignore_errors=True)
            work.progress(f"{stage.name}: failed: {exc}")
            failed.append(exc)
    return failed


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


def _device(name: str, spec: TargetSpec, work: Work) -> str:
    done = run_on_target(work.layout.root, spec, name, progress=work.progress, runtime=work.plan.runtime,
                         formats=work.plan.target_formats)
    verify = f"verify {'passed' if done.verify else 'FAILED'} ({len(done.verify.results)} files"
    verify += "" if done.formats is None else f" of {', '.join(done.formats)}"
    verify += f", {len(done.verify.skipped)} skipped)" if done.verify.skipped else ")"
    if done.selection is None:
        return f"{spec.text}: {verify}; no choice (emulated timings are not a board's)"
    chosen = done.selection.chosen
    return f"{spec.text}: {verify}; " + (f"chosen there: {chosen.file}, p50 {chosen.p50_us:,.0f} us" if chosen
                                          else f"nothing chosen: {done.selection.verdict}")


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
