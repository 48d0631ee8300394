"""The benchmark suite: ``python -m benchmarks`` (or ``make bench``).

1. Makes sure the run directory holds a trained model and its exports
   (``cllnn-export run``, which reuses whatever is already done).
2. Runs each section in a process of its own, one after the other so they do
   not disturb each other's timings: inference, floor, training, scaling, memory.
3. Files the sections under this machine's CPU class in ``results.json``
   (benchmarks/store.py: other classes stay as they are; a subset of
   sections replaces only those of this class) and writes ``RESULTS.md``, one
   section per class, and the plots under ``--out``.

``--quick`` is a smoke run of every code path (one training epoch, two
formats, a few calls, one tiny scaling point), two processes at a time, the
sections that need no run directory beside its preparation: it shows the
suite still works, and its numbers mean nothing.

    python -m benchmarks [--quick] [--out benchmarks] [--work runs/bench] [--sections a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import store
from benchmarks.common import say
from benchmarks.results import machine, write_results
from export.formats.registry import TFLITE_INT8
from export.lifeline import child_env, guarded
from runtime.atomic import write_json_atomic

SECTIONS = ("inference", "floor", "training", "scaling", "memory")
QUICK_FORMATS = (TFLITE_INT8.name,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the deployed CLLNN side by side against the seed's code, the "
        "Keras paths and the compute floor; write RESULTS.md, results.json and plots.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (tiny model, few calls): checks the suite runs, not the speed")
    parser.add_argument("--out", type=Path,
                        help="where RESULTS.md, results.json and plots/ go "
                        "(default: benchmarks/, or runs/bench-quick/ with --quick)")
    parser.add_argument("--work", type=Path,
                        help="run directory holding the model and exports; made by 'cllnn-export run' "
                        "if missing (default: runs/bench, or runs/bench-quick/work with --quick)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write RESULTS.md and plots again from OUT/results.json")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)")
    return parser


WORK_SECTIONS = {"inference", "floor", "memory"}  # need the prepared run directory
# TensorFlow's C++ start-up lines (oneDNN, CPU features) are noise in a section's output. TensorFlow
# reads the level once, when it is imported (at the top of a section's module), so the suite, which
# starts the sections, sets it in their environment; a level the caller set wins.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclass
class Job:
    name: str
    command: list[str]
    needs_work: bool
    log: Path | None = None  # where stdout/stderr go (None: the terminal)
    process: subprocess.Popen[str] | None = None
    started: float = 0.0


def prepare_command(work: Path, quick: bool) -> list[str]:
    """``cllnn-export run`` on the embedded digits: the seed's config; one epoch and int8 only
    when quick (int8 needs a model with some margin, so the seed's model, not a tiny one)."""
    work.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "cllnn-export"), "run", "--data", "embedded",
               "--out", str(work)]
    if quick:
        config = work.parent / "quick.toml"
        config.write_text(f"[train]\nepochs = 1\n[export]\nformats = {json.dumps(list(QUICK_FORMATS))}\n"
                          "calibration_size = 100\ncheck_size = 300\n"
                          "[tolerances.int8]\nmin_top1 = 0.9\nmax_accuracy_drop = 0.05\n")
        command += ["--config", str(config)]
    return command


def run_jobs(jobs: list[Job], parallel: int) -> dict[str, float]:
    """Start jobs in order, ``parallel`` at a time; a job that needs the run directory waits
    for 'prepare'. Any failure stops the suite. Returns each job's wall seconds."""
    pending, running, seconds = list(jobs), [], {}
    while pending or running:
        prepared = "prepare" in seconds
        for job in [j for j in pending if prepared or not j.needs_work]:
            if len(running) >= parallel:
                break
            say(f"suite: {job.name}: started")
            sink = open(job.log, "w") if job.log else None  # noqa: SIM115 (closed below)
            job.process = subprocess.Popen(guarded(job.command), text=True, stdout=sink, stderr=sink,
                                           env=child_env({**QUIET_TENSORFLOW, **os.environ}))  # dies with the suite
            if sink:
                sink.close()
            job.started = time.perf_counter()
            pending.remove(job)
            running.append(job)
        time.sleep(0.2)
        for job in [j for j in running if j.process.poll() is not None]:
            running.remove(job)
            if job.process.returncode != 0:
                for other in running:
                    other.process.kill()
                where = f"; see {job.log}" if job.log else ""
                raise SystemExit(f"suite: {job.name} failed (exit {job.process.returncode}){where}")
            seconds[job.name] = time.perf_counter() - job.started
            say(f"suite: {job.name}: done in {seconds[job.name]:.0f} s")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.sections.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        build_parser().error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    out = args.out or (Path("runs/bench-quick") if args.quick else Path("benchmarks"))
    if args.render:
        write_results(store.load(out / "results.json"), out)
        say(f"suite: rendered {out / 'RESULTS.md'} from {out / 'results.json'}")
        return 0
    work = args.work or (out / "work" if args.quick else Path("runs/bench"))
    started = time.perf_counter()
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    prepare = Job("prepare", prepare_command(work, args.quick), False, raw / "prepare.log")
    jobs = [prepare]
    for name in names:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--work", str(work),
                   "--json", str(raw / f"{name}.json")] + (["--quick"] if args.quick else [])
        jobs.append(Job(name, command, name in WORK_SECTIONS))
    if args.quick:  # independent work first, beside the preparation
        jobs.sort(key=lambda job: job.needs_work)
    seconds = run_jobs(jobs, parallel=2 if args.quick else 1)
    measured = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = {}
    for name in names:
        sections[name] = json.loads((raw / f"{name}.json").read_text())
        sections[name].update(seconds=seconds[name], measured=measured)
    run = {"quick": args.quick, "command": " ".join(["python -m benchmarks", *(argv or sys.argv[1:])]),
           "work": str(work),
           "prepare": {"command": " ".join(prepare.command), "seconds": seconds["prepare"]},
           "model": json.loads((work / "report.json").read_text()), "sections": sections,
           "machine": machine(), "seconds": time.perf_counter() - started}
    previous = out / "results.json"  # other CPU classes stay; a quick run starts a file of its own
    results = store.load(previous) if previous.is_file() and not args.quick else store.empty()
    results = store.add_run(results, run, SECTIONS)
    write_json_atomic(out / "results.json", results)
    write_results(results, out)
    say(f"suite: done in {run['seconds']:.0f} s: {out / 'RESULTS.md'} ({store.cpu_class(run)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
