"""``cllnn-export run``: data -> train -> convert -> parity -> benchmark -> report, resumable.

Each stage writes under one output directory and records a key: a hash of
everything its result depends on (its config sections, the data source, the
keys of the stages before it). A re-run skips a stage whose recorded key
matches and whose outputs are present, so an interrupted run resumes where it
stopped and a change redoes only what it affects; ``force`` redoes all. A
stage's key is recorded only after its outputs are complete, and every output
is written atomically, so a failing stage leaves the earlier ones intact.

Layout of ``out``::

    train/       model.keras, history.json, preprocessing.json
    artifacts/   the exported files, probes/, manifest.json
    parity.json  parity.xml
    bench.json
    report.json  report.md
    .stages/     one key file per completed stage

Not yet done (issue 6): the HTML report with plots.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cllnn_edge.atomic import write_bytes_atomic, write_json_atomic
from cllnn_edge.config import Config
from cllnn_edge.errors import CllnnError

Progress = Callable[[str], None]
STAGE_NAMES = ("train", "convert", "parity", "bench")
BENCH_BATCHES = (1, 64)


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
    """Run every stage that is not already done with the same inputs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState(out)
    sections = cfg.to_dict()
    keys: dict[str, str] = {}
    keys["train"] = stage_key("train", sections["model"], sections["train"], data)
    keys["convert"] = stage_key("convert", keys["train"], sections["export"])
    keys["parity"] = stage_key("parity", keys["convert"], sections["tolerances"])
    keys["bench"] = stage_key("bench", keys["convert"], BENCH_BATCHES)
    actions = {
        "train": lambda: _train(cfg, data, out),
        "convert": lambda: _convert(cfg, data, out, progress),
        "parity": lambda: _parity(cfg, data, out, progress),
        "bench": lambda: _bench(out),
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
        if done and not force and all(p.exists() for p in outputs[name]):
            progress(f"{name}: reused (inputs unchanged, key {keys[name]})")
            state.record(name, keys[name], False, 0.0)
            continue
        key_file.unlink(missing_ok=True)
        progress(f"{name}: running")
        started = time.perf_counter()
        try:
            actions[name]()
        except StageError:
            raise
        except CllnnError as exc:
            if isinstance(exc, ValueError):  # bad input (data, model, config): the caller's to fix
                raise
            raise StageError(f"stage {name!r} failed: {exc} (earlier stages are kept in {out})") from exc
        write_bytes_atomic(key_file, (keys[name] + "\n").encode())
        seconds = time.perf_counter() - started
        state.record(name, keys[name], True, seconds)
        progress(f"{name}: done in {seconds:.1f} s")
    write_report(state)
    return state


def _train(cfg: Config, data: str, out: Path) -> None:
    from cllnn_edge.data import load_splits
    from cllnn_edge.train import train

    splits = load_splits(
        data, validation_fraction=cfg.train.validation_fraction, split_seed=cfg.train.split_seed
    )
    train(cfg, splits, out / "train")


def _convert(cfg: Config, data: str, out: Path, progress: Progress) -> None:
    from export.convert import convert

    report = convert(out / "train" / "model.keras", out / "artifacts", cfg, data=data,
                     progress=progress)
    if not report:
        failed = [r.format.name for r in report.results if not r.passed]
        raise StageError(
            f"stage 'convert' failed: formats failed to convert or failed their checks: {failed} "
            f"(see {out / 'artifacts' / 'manifest.json'}; the trained model is kept)"
        )


def _parity(cfg: Config, data: str, out: Path, progress: Progress) -> None:
    from export.parity import run_parity

    report = run_parity(out / "train" / "model.keras", out / "artifacts", data=data,
                        tolerances=cfg.tolerances, progress=progress)
    report.save_json(out / "parity.json")
    report.save_junit(out / "parity.xml")


def _bench(out: Path) -> None:
    from runtime.bench import BenchSettings, bench_model, environment
    from runtime.manifest import load_manifest

    manifest = load_manifest(out / "artifacts")
    results = []
    for batch in BENCH_BATCHES:
        settings = BenchSettings(batch=batch, threads=1, warmup=10, runs=100 if batch == 1 else 20)
        for entry in manifest.artifacts:
            result = bench_model(out / "artifacts" / entry.file, settings)
            results.append({**result.to_dict(), "export_format": entry.format})
    write_json_atomic(out / "bench.json", {**environment(), "results": results})


def write_report(state: RunState) -> None:
    """report.json (everything) and report.md (the tables a person reads)."""
    out = state.out
    parity = json.loads((out / "parity.json").read_text())
    bench = json.loads((out / "bench.json").read_text())
    history = json.loads((out / "train" / "history.json").read_text())
    manifest = json.loads((out / "artifacts" / "manifest.json").read_text())
    report = {"stages": state.stages, "training": history, "manifest": manifest,
              "parity": parity, "bench": bench}
    write_json_atomic(out / "report.json", report)
    write_bytes_atomic(out / "report.md", _markdown(report).encode())


def _markdown(report: dict[str, Any]) -> str:
    history, parity, bench = report["training"], report["parity"], report["bench"]
    p50 = {(r["export_format"], r["batch"]): r for r in bench["results"]}
    lines = [
        "# CLLNN deployment report",
        "",
        f"Data: {history['data']['source']} (train {history['data']['train']}, "
        f"val {history['data']['val']}, test {history['data']['test']}); "
        f"test accuracy {history['final']['test_accuracy']:.4f}; "
        f"parity {'PASSED' if parity['passed'] else 'FAILED'} on {parity['images']} images.",
        "",
        "| format | size KiB | accuracy | top-1 agreement | max abs | p50 us (batch 1) | "
        "p99 us (batch 1) | images/s (batch 64) | parity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sizes = {a["format"]: a["size"] for a in report["manifest"]["artifacts"]}
    for result in parity["results"]:
        fmt, metrics = result["format"], result["metrics"]
        one, many = p50.get((fmt, 1), {}), p50.get((fmt, 64), {})
        lines.append(
            f"| {fmt} | {sizes[fmt] / 1024:.1f} | {metrics['accuracy']:.4f} | "
            f"{100 * metrics['top1_agreement']:.1f}% | {metrics['max_abs']:.2e} | "
            f"{one.get('p50_us', float('nan')):.0f} | {one.get('p99_us', float('nan')):.0f} | "
            f"{many.get('throughput_ips', float('nan')):.0f} | "
            f"{'pass' if result['passed'] else 'FAIL: ' + str(result['first_failing_stage'])} |"
        )
    lines += ["", "| stage | ran | seconds |", "| --- | --- | --- |"]
    lines += [f"| {name} | {'yes' if s['ran'] else 'reused'} | {s['seconds']} |"
              for name, s in report["stages"].items()]
    return "\n".join(lines) + "\n"

