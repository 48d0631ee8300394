"""How one stage of ``cllnn-export run`` is keyed, skipped, run and recorded (``export.pipeline.run``
says which stages there are).

A stage's record (``RunLayout.stage_record``) holds the key of its inputs and the SHA-256 of every
file it wrote; it is written only after the stage completed, and removed before it runs again, so a
stage interrupted half-way is never taken for done. A failure keeps its meaning
(``export.errors.exit_code_of``): bad input stays what it is (exit 2), a failed step becomes a
``StageError`` (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cllnn_edge.errors import CllnnError
from export.errors import EXIT_USAGE, StageError, exit_code_of
from export.layout import RunLayout
from runtime.artifacts.manifest import sha256_file
from runtime.atomic import write_json_atomic

W = TypeVar("W")  # what the stages share: export.pipeline.run.Work
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Stage(Generic[W]):
    """One step of the run: what it depends on, what it writes, how to do it (``action`` takes the
    run's shared work, ``export.pipeline.run.Work``)."""

    name: str
    key: str  # hash of everything its result depends on
    outputs: tuple[Path, ...]  # files or directories, present when it completed; every file in them checksummed
    action: Callable[[W], str]  # does the work; returns a one-line summary
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


def run_stage(stage: Stage[W], work: W, state: RunState, force: bool, progress: Progress) -> None:
    """Run ``stage`` unless its record holds the same key, the stage it reads did not run again, and
    every file it wrote is present and unchanged; then record its key and files' checksums."""
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
