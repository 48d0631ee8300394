"""Choosing, on the device, the file to deploy: verify, measure, pick within a budget.

Every exported format is a trade: size, latency, agreement with the trained
model. Which one wins depends on the CPU (an int8 GEMM is fast with VNNI or
the ARM dot-product instructions and slow without them), so the choice is
made where the file will run, in three steps:

1. verify: ``runtime.checks.verify.verify`` checks every file the manifest lists
   against the check set stored at export (parity's comparator and
   tolerance table). A file that fails is not a candidate; one this device's runtime cannot load is
   skipped with the op and version named (``Selection.skipped``), never chosen.
2. measure: ``runtime.bench.latency.bench_model`` times every verified file, the
   same measurement as ``cllnn-bench`` (``--batch``, ``--threads``, ``--runs``).
3. choose: of the verified files within the budget (``Budget``: accuracy
   drop against the trained model in percentage points, top-1 agreement in
   percent, file size in KiB, p99 latency in microseconds; a limit left
   unset is not applied), the fastest by p50; ties go to the smaller p99,
   then the smaller file.

The choice and every candidate's figures, with a reason each, are a
``Selection`` (``selection.json``); ``runtime.deploy.directory.write_deploy`` writes
the deploy directory with the chosen file alone. When no file fits, the
message names the tightest constraint: the limit that excludes the most
verified files (on a tie, the one its nearest excluded file misses by the
smaller relative margin), with that nearest file's figure, so the user knows
what to relax. The command is ``runtime.cli.select`` (``cllnn-bench select``).
"""


from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import TrustedKeyLike
from runtime.atomic import write_json_atomic
from runtime.bench.latency import BenchResult, BenchSettings, bench_model, environment
from runtime.loader import backend_for
from runtime.checks.parity import ArtifactParity, ParityReport, Skipped
from runtime.checks.metrics import accuracy_drop
from runtime.checks.tolerances import ToleranceConfig
from runtime.checks.verify import opened_artifacts, verify
from runtime.deploy.boards import KIB
from runtime.deploy.budget import LIMITS, Budget, Limit, number  # noqa: F401  (Budget, LIMITS, Limit: re-exported)
from runtime.machine import CpuInfo, machine_line
from runtime.tables import text_table

EXIT_CHOSEN, EXIT_NONE_FITS, EXIT_USAGE = 0, 1, 2
PROG = "cllnn-bench select"
SELECTION_NAME = "selection.json"
TOOL = "cllnn-bench select"  # selection.json's "tool": marks a directory select wrote
SCHEMA_VERSION = 1
SIGNATURE_NOTE = "not signed: deploy/ carries SHA-256 checksums only (cllnn-export sign signs an export)"
TIMED_HERE = "measured by cllnn-bench select on this machine"
TIMED_BEFORE = "bench's measurement on this machine (cllnn-export run's bench stage, bench.json), not timed again"
SIGNED_NOTE = ("signed{checked}: deploy/ carries the export's manifest.json and manifest.sig byte for byte "
               "(they list every exported file; the chosen one is checked on load)")


@dataclass(frozen=True)
class Candidate:
    """One listed file: its figures on this machine, whether it was chosen, and why (not)."""

    format: str
    file: str
    precision: str
    size: int  # bytes
    verified: bool
    agreement_pct: float  # top-1 agreement with the trained model on the check set
    accuracy: float  # on the check set, a fraction
    accuracy_drop_pp: float  # percentage points below the trained model (negative: above)
    max_abs: float
    p50_us: float | None = None  # None: not measured (failed verification)
    p99_us: float | None = None
    chosen: bool = False
    reason: str = ""
    arena_bytes: int | None = None  # the tensor arena to allocate, for a microcontroller file (details.mcu)

    @property
    def size_kib(self) -> float:
        return self.size / 1024

    @property
    def flash_kib(self) -> float:
        """The file's bytes in a microcontroller's flash; inf for a file that is not for one."""
        return self.size_kib if self.arena_bytes is not None else math.inf

    @property
    def arena_kib(self) -> float:
        return self.arena_bytes / KIB if self.arena_bytes is not None else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_kib": self.size_kib}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Selection:
    """The choice on this machine; ``bool(selection)`` is True when a file was chosen."""

    artifacts_dir: str
    machine: dict[str, Any]  # runtime.bench.latency.environment()'s: CPU model, arch, ISA, class, platform
    versions: dict[str, str]
    settings: dict[str, Any]  # BenchSettings
    budget: Budget
    tolerances: dict[str, dict[str, float]]  # the verification table, per precision
    check_set: dict[str, Any]  # file, images, split, source
    reference_accuracy: float  # the trained model's, on the check set
    candidates: tuple[Candidate, ...]
    verdict: str  # the chosen one's reason, or why none fits (naming the tightest constraint)
    seconds: float = 0.0
    signature: str = SIGNATURE_NOTE
    timing: str = TIMED_HERE  # where the candidates' p50 / p99 come from (older selections: select's own)
    skipped: tuple[Skipped, ...] = ()  # listed files this device's runtime cannot load, with why
    formats: tuple[str, ...] | None = None  # select --formats: the formats considered (None: every listed file)

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.chosen), None)

    def __bool__(self) -> bool:
        return self.chosen is not None

    def to_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {
            "tool": TOOL,
            "schema_version": SCHEMA_VERSION,
            **{k: v for k, v in asdict(self).items() if k not in ("budget", "candidates", "skipped", "formats")},
            "formats": None if self.formats is None else list(self.formats),
            "chosen": None if chosen is None else chosen.file,
            "budget": self.budget.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "skipped": [asdict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        if data.get("tool") != TOOL or data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"not a selection written by {TOOL} (schema {SCHEMA_VERSION}): "
                             f"tool {data.get('tool')!r}, schema {data.get('schema_version')!r}")
        scalar = ("artifacts_dir", "machine", "versions", "settings", "tolerances", "check_set",
                  "reference_accuracy", "verdict", "seconds", "signature", "timing")
        return cls(**{k: data[k] for k in scalar if k in data}, budget=Budget(**data["budget"]),
                   candidates=tuple(Candidate.from_dict(c) for c in data["candidates"]),
                   skipped=tuple(Skipped(**s) for s in data.get("skipped", ())),
                   formats=None if data.get("formats") is None else tuple(data["formats"]))

    def save_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> Selection:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def cpu(self) -> CpuInfo:
        return CpuInfo.from_record(self.machine)


def select(
    source: str | Path | Artifacts,
    budget: Budget = Budget(),
    settings: BenchSettings = BenchSettings(),
    *,
    tolerances: ToleranceConfig | None = None,
    tolerance_overrides: Sequence[str] = (),
    progress: Callable[[str], None] = lambda line: None,
    trusted_key: TrustedKeyLike | None = None,
    timings: Mapping[str, BenchResult] | None = None,
    tflite_backend: str | None = None,
    formats: Sequence[str] | None = None,
) -> Selection:
    """Verify every listed file on this machine, measure the verified ones, choose within ``budget``.

    ``source``: the artefacts directory, or its ``Artifacts`` opened already (the manifest is read
    once, each file hashed once, for verification, timing and deploy alike). ``tolerances`` /
    ``tolerance_overrides`` as for ``runtime.checks.verify.verify``. ``timings``: figures already
    measured on this machine with ``settings`` (by file name, e.g. ``cllnn-export run``'s bench stage),
    used instead of timing those files again; ``Selection.timing`` says which source the figures are.
    Raises what ``verify`` raises on missing or altered inputs (``ValueError`` subclasses); a file that
    fails verification, or no file fitting, is a result, not an exception. With ``trusted_key`` every
    file is verified and timed only if the manifest is signed by that key (``SignatureError`` otherwise).
    ``tflite_backend`` as for ``verify``: a file that runtime cannot load is skipped, never chosen.
    ``formats`` as for ``verify``: only those formats' files are considered.
    """
    started = time.perf_counter()
    artifacts = opened_artifacts(source, trusted_key)
    report = verify(artifacts, tolerances=tolerances, tolerance_overrides=tolerance_overrides,
                    threads=settings.threads, progress=progress, tflite_backend=tflite_backend, formats=formats)
    candidates = _measured(artifacts, report, settings, timings or {}, progress, tflite_backend)
    marked, verdict = choose(candidates, budget)
    if report.skipped:
        verdict += f"; {len(report.skipped)} skipped, cannot load here: {', '.join(s.file for s in report.skipped)}"
    env = environment()
    record = artifacts.manifest.check_set
    return Selection(
        artifacts_dir=str(artifacts.directory),
        machine=env["machine"],
        versions=env["versions"],
        settings=asdict(settings),
        budget=budget,
        tolerances=report.tolerances,
        check_set={"file": record.file, "images": record.images, "split": record.split,
                   "source": record.source} if record else {},
        reference_accuracy=report.reference_accuracy,
        candidates=marked,
        verdict=verdict,
        seconds=time.perf_counter() - started,
        signature=_signature_note(artifacts),
        timing=TIMED_HERE if not timings else TIMED_BEFORE,
        skipped=report.skipped,
        formats=report.formats,
    )


def _measured(artifacts: Artifacts, report: ParityReport, settings: BenchSettings,
              timings: Mapping[str, BenchResult], progress: Callable[[str], None],
              tflite_backend: str | None = None) -> list[Candidate]:
    """Every verification result as a candidate, the verified ones with their p50 / p99: from
    ``timings`` where given, else timed here on the bytes verification checked."""
    verified = sum(r.passed for r in report.results)
    candidates = []
    for result in report.results:
        entry = artifacts.manifest.entry_for(result.file)
        assert entry is not None  # verify compared only listed files
        p50 = p99 = None
        if result.passed:
            timing = timings.get(result.file) or bench_model(
                artifacts.file(result.file), settings, backend=backend_for(entry.runtime, tflite_backend))
            p50, p99 = timing.p50_us, timing.p99_us
            progress(f"[{sum(c.verified for c in candidates) + 1}/{verified}] {result.format:<15} "
                     f"batch {settings.batch}, {settings.runs} runs: p50 {p50:,.1f} us, p99 {p99:,.1f} us"
                     + ("" if result.file not in timings else " (bench's)"))
        arena = entry.details.mcu.arena_bytes if entry.details.mcu else None
        candidates.append(candidate_of(result, entry.size, p50, p99, arena))
    return candidates


def _signature_note(artifacts: Artifacts) -> str:
    if artifacts.signature is None:
        return SIGNATURE_NOTE
    checked = (" (not checked: no trusted key given)" if artifacts.trusted_key is None
               else f" (checked with key {artifacts.trusted_key.key_id})")
    return SIGNED_NOTE.format(checked=checked)


def candidate_of(result: ArtifactParity, size: int, p50_us: float | None, p99_us: float | None,
                 arena_bytes: int | None = None) -> Candidate:
    """A verification result as a candidate; one that failed carries the checks it broke as its reason."""
    metrics = result.metrics
    broken = [f"{c.name} {c.value:.4g} {'<' if c.rule == '>=' else '>'} {c.limit:g}"
              for c in result.checks if not c.passed]
    return Candidate(
        format=result.format, file=result.file, precision=result.precision, size=size,
        verified=result.passed, agreement_pct=100 * metrics["top1_agreement"],
        accuracy=metrics["accuracy"], accuracy_drop_pp=100 * accuracy_drop(metrics),
        max_abs=metrics["max_abs"], p50_us=p50_us, p99_us=p99_us, arena_bytes=arena_bytes,
        reason="" if result.passed else "failed verification: " + "; ".join(broken),
    )


def choose(candidates: Sequence[Candidate], budget: Budget) -> tuple[tuple[Candidate, ...], str]:
    """Mark the fastest verified candidate within ``budget`` and give each a reason.

    Returns the candidates (same order) and the verdict: the chosen one's
    reason, or, when none fits, the message naming the tightest constraint.
    Verified candidates must carry p50 and p99.
    """
    verified = [c for c in candidates if c.verified]
    over = {c.file: list(dict.fromkeys(limit.describe(getattr(c, limit.figure), value)
                                       for limit, value in budget.limits()
                                       if not limit.admits(getattr(c, limit.figure), value))) for c in verified}
    within = sorted((c for c in verified if not over[c.file]),
                    key=lambda c: (c.p50_us, c.p99_us, c.size, c.file))
    if not within:
        return tuple(c if not c.verified else dataclasses.replace(c, reason="; ".join(over[c.file]))
                     for c in candidates), tightest(candidates, budget)
    best = within[0]
    verdict = (f"the fastest by p50 of the {len(within)} verified files within budget" if len(within) > 1
               else "the only verified file within budget")
    marked = []
    for c in candidates:
        if not c.verified:
            marked.append(c)
        elif over[c.file]:
            marked.append(dataclasses.replace(c, reason="; ".join(over[c.file])))
        elif c.file == best.file:
            marked.append(dataclasses.replace(c, chosen=True, reason=verdict))
        else:
            marked.append(dataclasses.replace(
                c, reason=f"slower than {best.format} ({number(best.p50_us)} us)" if c.p50_us > best.p50_us
                else f"as fast as {best.format} ({number(best.p50_us)} us), ranked after it by p99 and size"))
    return tuple(marked), verdict


def tightest(candidates: Sequence[Candidate], budget: Budget) -> str:
    """Why no candidate fits, naming the tightest constraint.

    The rule: the limit that excludes the most verified files; on a tie, the
    one its nearest excluded file misses by the smaller margin relative to
    the limit. With no verified file, verification itself is the constraint.
    """
    verified = [c for c in candidates if c.verified]
    if not verified:
        failures = "; ".join(f"{c.file}: {c.reason.removeprefix('failed verification: ')}" for c in candidates)
        return f"no file passed verification on this machine ({len(candidates)} listed): {failures}"
    rows = []
    for limit, value in budget.limits():
        excluded = [c for c in verified if not limit.admits(getattr(c, limit.figure), value)]
        if excluded:
            nearest = min(excluded, key=lambda c: limit.margin(getattr(c, limit.figure), value))
            rows.append((limit, value, excluded, nearest))
    rows.sort(key=lambda r: (-len(r[2]), r[0].margin(getattr(r[3], r[0].figure), r[1])))
    limit, value, excluded, nearest = rows[0]
    message = (f"no file fits the budget; tightest constraint: {limit.flag} {value:g} excludes "
               f"{len(excluded)} of {len(verified)} verified files (nearest: {nearest.file}, "
               f"{limit.describe(getattr(nearest, limit.figure), value)})")
    others = [f"{other.flag} {other_value:g} excludes {len(other_excluded)}"
              for other, other_value, other_excluded, _ in rows[1:]]
    return message + (f"; also {', '.join(others)}" if others else "")


def format_table(selection: Selection) -> str:
    """One row per candidate, the chosen one marked with ``*``, and the CPU class line under them."""
    header = ("", "format", "file", "size KiB", "p50 us", "p99 us", "top-1 agr", "acc drop", "verified",
              "reason")
    rows = [header] + [
        ("*" if c.chosen else "", c.format, c.file, f"{c.size_kib:,.1f}",
         "-" if c.p50_us is None else f"{c.p50_us:,.1f}", "-" if c.p99_us is None else f"{c.p99_us:,.1f}",
         f"{c.agreement_pct:.1f}%", f"{c.accuracy_drop_pp:+.2f} pp", "yes" if c.verified else "NO", c.reason)
        for c in selection.candidates
    ] + [("", s.format, s.file, "-", "-", "-", "-", "-", "SKIPPED", f"cannot load here: {s.reason}")
         for s in selection.skipped]
    return "\n".join([text_table(rows[0], rows[1:], right={3, 4, 5, 6, 7}), machine_line(selection.cpu)])
