"""``cllnn-export run``: data -> train -> convert -> parity -> benchmark -> report, resumable.

Each stage writes under one output directory and records a key: a hash of
everything its result depends on (its config sections, the data, the library
versions, the keys of the stages before it). A re-run skips a stage whose
recorded key matches, whose outputs are present and whose input stage did not
run again, so an interrupted run resumes where it stopped and a change redoes
only what it affects; ``force`` redoes all. The toolkit's own code enters the
keys only as its version: after editing it, use ``force``. A
stage's key is recorded only after its outputs are complete, and every output
is written atomically, so a failing stage leaves the earlier ones intact.

Layout of ``out``::

    train/       model.keras, history.json, preprocessing.json
    artifacts/   the exported files, probes/, manifest.json
    parity.json  parity.xml
    bench.json
    report.json  report.md  report.html  plots/*.png
    .stages/     one key file per completed stage

The data enters the keys by its content (``Splits.fingerprint``), not its
name, and every key includes the library versions: a changed file at the same
path, or an upgraded converter, redoes what it affects.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cllnn_edge.atomic import write_bytes_atomic, write_json_atomic
from cllnn_edge.config import Config
from cllnn_edge.errors import CllnnError

if TYPE_CHECKING:
    from cllnn_edge.data import Splits

Progress = Callable[[str], None]
STAGE_NAMES = ("train", "convert", "parity", "bench")
STAGE_INPUT = {"convert": "train", "parity": "convert", "bench": "convert"}  # whose outputs each reads
BENCH_BATCHES = (1, 64)
BENCH_RUNS = {1: 200, 64: 20}  # timed calls per batch size


class StageError(CllnnError):
    """A stage of the run failed; earlier stages' results are kept."""


@dataclass
class RunState:
    """What the run did: per stage, whether it ran or was reused, its key and duration."""

    out: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, name: str, key: str, ran: bool, seconds: float) -> None:
        self.stages[name] = {"key": key, "ran": ran, "seconds": round(seconds, 2)}


def stage_key(name: str, *parts: Any) -> str:
    """A stable hash of a stage's inputs (JSON of the parts, keys sorted)."""
    payload = json.dumps([name, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def run_pipeline(
    cfg: Config,
    out: str | Path,
    *,
    data: str = "embedded",
    force: bool = False,
    progress: Progress = lambda line: None,
) -> RunState:
    """Run every stage that is not already done with the same inputs, then write the report."""
    from cllnn_edge.data import splits_for
    from cllnn_edge.versions import library_versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState(out)
    splits = splits_for(cfg, data)
    data_summary = {**splits.summary(), "fingerprint": splits.fingerprint()}
    progress(f"data: {data}: train {data_summary['train']}, val {data_summary['val']}, "
             f"test {data_summary['test']} (fingerprint {data_summary['fingerprint'][:12]})")
    sections, versions = cfg.to_dict(), library_versions()
    keys: dict[str, str] = {}
    keys["train"] = stage_key("train", sections["model"], sections["train"],
                              data_summary["fingerprint"], versions)
    keys["convert"] = stage_key("convert", keys["train"], sections["export"])
    keys["parity"] = stage_key("parity", keys["convert"], sections["tolerances"])
    keys["bench"] = stage_key("bench", keys["convert"], BENCH_BATCHES, BENCH_RUNS)
    actions: dict[str, Callable[[], str]] = {
        "train": lambda: _train(cfg, splits, out, progress),
        "convert": lambda: _convert(cfg, data, out, progress),
        "parity": lambda: _parity(cfg, data, out, progress),
        "bench": lambda: _bench(out, progress),
    }
    outputs = {
        "train": [out / "train" / "model.keras"],
        "convert": [out / "artifacts" / "manifest.json"],
        "parity": [out / "parity.json"],
        "bench": [out / "bench.json"],
    }
    for name in STAGE_NAMES:
        key_file = out / ".stages" / f"{name}.key"
        done = key_file.is_file() and key_file.read_text().strip() == keys[name]
        upstream_ran = name in STAGE_INPUT and state.stages[STAGE_INPUT[name]]["ran"]
        if done and not force and not upstream_ran and all(p.exists() for p in outputs[name]):
            progress(f"{name}: reused (inputs unchanged, key {keys[name]})")
            state.record(name, keys[name], False, 0.0)
            continue
        key_file.unlink(missing_ok=True)
        progress(f"{name}: running")
        started = time.perf_counter()
        try:
            summary = actions[name]()
        except StageError:
            raise
        except CllnnError as exc:
            if isinstance(exc, ValueError):  # bad input (data, model, config): the caller's to fix
                raise
            raise StageError(f"stage {name!r} failed: {exc} (earlier stages are kept in {out})") from exc
        write_bytes_atomic(key_file, (keys[name] + "\n").encode())
        seconds = time.perf_counter() - started
        state.record(name, keys[name], True, seconds)
        progress(f"{name}: done in {seconds:.1f} s: {summary}")
    started = time.perf_counter()
    from export.report import write_report

    write_report(out, state.stages, data_summary)
    progress(f"report: done in {time.perf_counter() - started:.1f} s: {out / 'report.html'}")
    return state


def _train(cfg: Config, splits: Splits, out: Path, progress: Progress) -> str:
    from cllnn_edge.train import train

    result = train(cfg, splits, out / "train", progress=progress)
    final = result.history["final"]
    return f"val accuracy {final['val_accuracy']:.4f}, test accuracy {final['test_accuracy']:.4f}"


def _convert(cfg: Config, data: str, out: Path, progress: Progress) -> str:
    from export.convert import convert

    report = convert(out / "train" / "model.keras", out / "artifacts", cfg, data=data,
                     progress=progress)
    if not report:
        failed = [r.format.name for r in report.results if not r.passed]
        raise StageError(
            f"stage 'convert' failed: formats failed to convert or failed their checks: {failed} "
            f"(see {out / 'artifacts' / 'manifest.json'}; the trained model is kept)"
        )
    return f"{len(report.results)} formats exported and checked"


def _parity(cfg: Config, data: str, out: Path, progress: Progress) -> str:
    from export.parity import run_parity

    report = run_parity(out / "train" / "model.keras", out / "artifacts", data=data,
                        tolerances=cfg.tolerances, progress=progress)
    report.save_json(out / "parity.json")
    report.save_junit(out / "parity.xml")
    passed = sum(r.passed for r in report.results)
    return f"{passed}/{len(report.results)} formats within tolerance on {report.images} images"


def _bench(out: Path, progress: Progress) -> str:
    from runtime.bench import BenchSettings, bench_model, environment
    from runtime.manifest import load_manifest

    manifest = load_manifest(out / "artifacts")
    jobs = [(batch, entry) for batch in BENCH_BATCHES for entry in manifest.artifacts]
    results = []
    for index, (batch, entry) in enumerate(jobs, start=1):
        settings = BenchSettings(batch=batch, threads=1, warmup=10, runs=BENCH_RUNS[batch])
        result = bench_model(out / "artifacts" / entry.file, settings)
        results.append({**result.to_dict(), "export_format": entry.format})
        progress(f"[{index}/{len(jobs)}] {entry.format:<15} batch {batch:<3} {settings.runs} runs: "
                 f"p50 {result.p50_us:,.0f} us, {result.throughput_ips:,.0f} images/s")
    settings = {"threads": 1, "warmup": 10, "runs": {str(b): n for b, n in BENCH_RUNS.items()},
                "images": "random uint8"}
    write_json_atomic(out / "bench.json", {**environment(), "settings": settings, "results": results})
    best = min((r for r in results if r["batch"] == 1), key=lambda r: r["p50_us"])
    return f"fastest at batch 1: {best['export_format']} p50 {best['p50_us']:,.0f} us"
