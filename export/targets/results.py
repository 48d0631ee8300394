"""One device's results, ``RUN_DIR/devices/NAME/``: what ``cllnn-export target run`` brought back, read and
checked as strictly as a manifest before anything uses it.

The files come from another machine, so each is input like a manifest: a regular file (no symlink) of at
most ``MAX_RESULT_BYTES``, its nesting bounded before it is parsed, the JSON checked as a whole against its
closed schema (``export.targets.results_schema``, fastjsonschema, errors from
``runtime.artifacts.manifest_schema.schema_problem``), then read through its typed reader
(``DeviceFacts``, ``ParityReport``, ``BenchReport``, ``Selection``). Then the files are checked against
each other and the run: ``target.json`` names this directory and a target whose kind it matches, an
emulated device has no ``selection.json`` (its timings choose nothing) and a real one has it, every file
verify, bench and select name is one of the run's manifest with its format, bench timed only what verify
loaded, verify named every file of the formats ``target.json`` says were asked (``--formats``; all when
none were) and select considered those same formats, the chosen file passed verify there, a recorded verdict agrees with its checks, and every report
was measured on the CPU the probe found. Anything else is a ``TargetError`` naming the file and field.

``remote_run`` reads what it fetched through ``parse_result`` and the staged directory through
``read_device`` before renaming it into place; the report reads ``devices/`` through ``read_devices``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import fastjsonschema

from export.errors import TargetError
from export.layout import RunLayout
from export.targets.probe import DeviceFacts, parse_probe
from export.targets.results_schema import (BENCH_JSON, MAX_DEPTH, MAX_RESULT_BYTES, PROBE_JSON, RESULT_FILES,
                                           RUN_JSON, SELECTION_NAME, TIMINGS, VERIFY_JSON, validator)
from export.targets.runtime_pin import RuntimePin
from export.targets.spec import parse_target
from runtime.artifacts.manifest import Manifest, ManifestError
from runtime.artifacts.manifest_schema import DocumentError, bounded_json, schema_problem
from runtime.bench.latency import BenchReport
from runtime.checks.parity import ParityReport
from runtime.deploy.choose import Candidate, Selection
from runtime.machine import machine_line

__all__ = ["BENCH_JSON", "MAX_RESULT_BYTES", "PROBE_JSON", "RESULT_FILES", "RUN_JSON", "VERIFY_JSON",
           "DeviceResults", "parse_result", "read_device", "read_devices", "target_record"]


@dataclass(frozen=True)
class DeviceResults:
    """One device's results, every file read and checked (``read_device``)."""

    name: str
    target: str
    emulated: bool  # its timings are a CPU emulator's: shown, never chosen by
    directory: Path
    facts: DeviceFacts
    verify: ParityReport
    bench: BenchReport
    selection: Selection | None  # None on an emulated device
    formats: tuple[str, ...] | None = None  # --formats: the formats asked there (None: every file)

    @property
    def chosen(self) -> Candidate | None:
        return None if self.selection is None else self.selection.chosen

    @property
    def machine(self) -> str:
        """The device's CPU as every benchmark line names one (``runtime.machine.machine_line``)."""
        return machine_line({**self.facts.cpu.record(), "cpu_count": self.facts.cpu_count})


def target_record(name: str, target: str, emulated: bool, runtime: RuntimePin | None = None,
                  formats: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``target.json``: which device and target the directory's results are of, whose timings they are,
    the runtime release they ran with when one was pinned (``--runtime``; None: the verified ones) and the
    formats verify, bench and select were given (``--formats``; None: every file of the run)."""
    return {"name": name, "target": target, "emulated": emulated, "timings": TIMINGS[emulated],
            "runtime": None if runtime is None else runtime.to_dict(),
            "formats": None if formats is None else list(formats)}


def parse_result(raw: bytes, kind: str, where: str) -> dict[str, Any]:
    """``raw`` (the bytes of the result file ``kind``: verify.json, bench.json, selection.json or
    target.json) as a JSON object its schema accepts; else a ``TargetError`` starting with ``where``."""
    try:
        data = bounded_json(raw, max_bytes=MAX_RESULT_BYTES, max_depth=MAX_DEPTH)
    except DocumentError as exc:
        raise TargetError({
            "size": f"{where}: {len(raw):,} bytes, more than the {MAX_RESULT_BYTES:,} a result file may be; "
                    f"refused unread",
            "utf-8": f"{where}: not UTF-8 ({exc.detail}); refused",
            "depth": f"{where}: nested more than {MAX_DEPTH} levels deep (objects and lists), more than a "
                     f"{kind} is; refused unparsed",
            "json": f"{where}: not valid JSON ({exc.detail}); refused",
        }[exc.kind]) from None
    try:
        validator(kind)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise TargetError(f"{where}: {schema_problem(exc)}") from None
    return data


def read_devices(layout: RunLayout, manifest: Manifest) -> list[tuple[str, DeviceResults | TargetError]]:
    """Every device directory of the run, by name, each read or the error that refused it (a run with no
    ``devices/``, as every run before target devices: none). Staging directories (``.NAME.partial-*``)
    are not devices."""
    if not layout.devices.is_dir():
        return []
    found: list[tuple[str, DeviceResults | TargetError]] = []
    for directory in sorted(p for p in layout.devices.iterdir() if not p.name.startswith(".")):
        try:
            found.append((directory.name, read_device(directory, manifest)))
        except TargetError as exc:
            found.append((directory.name, exc))
    return found


def read_device(directory: Path, manifest: Manifest, *, name: str | None = None) -> DeviceResults:
    """``directory``'s results, every file and their agreement checked; ``name``: the device's, when the
    directory is not yet named for it (``remote_run`` checks its staging directory)."""
    name = directory.name if name is None else name
    raw = _read_all(directory)
    record = parse_result(raw[RUN_JSON], RUN_JSON, str(directory / RUN_JSON))
    _check_record(record, name, directory, SELECTION_NAME in raw)
    try:
        facts = parse_probe(raw[PROBE_JSON], record["target"])
    except TargetError as exc:
        raise TargetError(f"{directory / PROBE_JSON}: {exc}") from None
    data = {kind: parse_result(raw[kind], kind, str(directory / kind))
            for kind in raw if kind not in (RUN_JSON, PROBE_JSON)}
    verify = ParityReport.from_dict(data[VERIFY_JSON])
    bench = BenchReport.from_dict(data[BENCH_JSON])
    selection = Selection.from_dict(data[SELECTION_NAME]) if SELECTION_NAME in data else None
    formats = {entry.file: entry.format for entry in manifest.artifacts}
    asked = None if record.get("formats") is None else tuple(record["formats"])
    _check_verify(data[VERIFY_JSON], verify, formats, directory / VERIFY_JSON)
    _check_asked(asked, verify, selection, manifest, directory)
    _check_bench(bench, verify, formats, directory / BENCH_JSON)
    if selection is not None:
        _check_selection(data[SELECTION_NAME], selection, verify, formats, directory / SELECTION_NAME)
    for kind, machine in ((BENCH_JSON, bench.machine), (SELECTION_NAME, selection and selection.machine)):
        cpu = facts.cpu.record()
        if machine is not None and {key: machine.get(key) for key in cpu} != cpu:
            raise TargetError(f"{directory / kind}: machine: measured on {machine_line(machine)}, not on the CPU "
                              f"{directory / PROBE_JSON} found ({machine_line(cpu)}); refused")
    return DeviceResults(name, record["target"], record["emulated"], directory, facts, verify, bench, selection,
                         asked)


def _read_all(directory: Path) -> dict[str, bytes]:
    """Every result file's bytes; a missing one, a stray entry, a symlink or an oversized file refused."""
    if directory.is_symlink():
        raise TargetError(f"{directory}: a symlink, not a device's directory; refused")
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise TargetError(f"{directory}: cannot list it ({exc.strerror})") from None
    stray = [entry for entry in entries if entry not in RESULT_FILES]
    if stray:
        raise TargetError(f"{directory}: {', '.join(stray)}: not a result file; a device's directory holds only "
                          f"{', '.join(RESULT_FILES)} (cllnn-export target run writes it whole)")
    missing = [kind for kind in RESULT_FILES if kind not in entries and kind != SELECTION_NAME]
    if missing:
        raise TargetError(f"{directory}: lacks {', '.join(missing)}; run cllnn-export target run again")
    return {entry: _read(directory / entry) for entry in entries}


def _read(path: Path) -> bytes:
    """A regular file's bytes, at most ``MAX_RESULT_BYTES``, checked before and while reading."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise TargetError(f"{path}: cannot open it as a regular file ({exc.strerror}); refused") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TargetError(f"{path}: not a regular file; refused")
        if info.st_size > MAX_RESULT_BYTES:
            raise TargetError(f"{path}: {info.st_size:,} bytes, more than the {MAX_RESULT_BYTES:,} a result file "
                              f"may be; refused unread")
        return file.read(MAX_RESULT_BYTES + 1)


def _check_record(record: dict[str, Any], name: str, directory: Path, has_selection: bool) -> None:
    where = directory / RUN_JSON
    if record["name"] != name:
        raise TargetError(f"{where}: name: {record['name']!r}, but the directory is the device {name!r}'s; refused")
    try:
        spec = parse_target(record["target"])
    except TargetError as exc:
        raise TargetError(f"{where}: target: {exc}") from None
    if spec.emulated != record["emulated"]:
        raise TargetError(f"{where}: emulated: {record['emulated']}, but target {spec.text!r} is "
                          f"{'' if spec.emulated else 'not '}an emulated one; refused")
    if record["timings"] != TIMINGS[record["emulated"]]:
        raise TargetError(f"{where}: timings: {record['timings']!r}, but an {'emulated' if spec.emulated else 'real'} "
                          f"device's are {TIMINGS[record['emulated']]!r}; refused")
    if record["emulated"] and has_selection:
        raise TargetError(f"{directory / SELECTION_NAME}: present, but {where} says emulated: an emulated device's "
                          f"timings choose nothing, so it has no selection; refused")
    if not record["emulated"] and not has_selection:
        raise TargetError(f"{directory}: lacks {SELECTION_NAME} (a real device's choice); {where} says emulated: "
                          f"false; run cllnn-export target run again")


def _check_listed(field: str, file: str, fmt: str, formats: dict[str, str], where: Path) -> None:
    """``file`` is one of the run's manifest, with the format the manifest gives it."""
    if file not in formats:
        raise TargetError(f"{where}: {field}.file: {file!r} is not in the run's manifest (it lists "
                          f"{', '.join(sorted(formats))}); refused")
    if formats[file] != fmt:
        raise TargetError(f"{where}: {field}.format: {fmt!r}, but the run's manifest lists {file} as "
                          f"{formats[file]!r}; refused")


def _check_verify(data: dict[str, Any], verify: ParityReport, formats: dict[str, str], where: Path) -> None:
    seen: set[str] = set()
    for field, items in (("results", verify.results), ("skipped", verify.skipped)):
        for index, item in enumerate(items):
            _check_listed(f"{field}[{index}]", item.file, item.format, formats, where)
            if item.file in seen:
                raise TargetError(f"{where}: {field}[{index}].file: {item.file} is named twice; refused")
            seen.add(item.file)
    for index, (result, recorded) in enumerate(zip(verify.results, data["results"])):
        if recorded["passed"] != result.passed:
            raise TargetError(f"{where}: results[{index}].passed: {recorded['passed']}, but its checks and stages "
                              f"say {result.passed}; refused")
    if data["passed"] != bool(verify):
        raise TargetError(f"{where}: passed: {data['passed']}, but its results say {bool(verify)}; refused")


def _check_asked(asked: tuple[str, ...] | None, verify: ParityReport, selection: Selection | None,
                 manifest: Manifest, directory: Path) -> None:
    """verify (and select) were given the formats ``target.json`` records, and verify named every file of
    them, verified or skipped: a file left out is one not asked for, never one lost on the way."""
    said = "every format" if asked is None else ", ".join(asked)
    for kind, report in ((VERIFY_JSON, verify), (SELECTION_NAME, selection)):
        if report is not None and _names(report.formats) != _names(asked):
            given = "null (every format)" if report.formats is None else ", ".join(report.formats)
            raise TargetError(f"{directory / kind}: formats: {given}, but {directory / RUN_JSON} says {said} "
                              f"was asked; refused")
    try:
        wanted = [entry.file for entry in manifest.entries_of(asked, "formats")]
    except ManifestError as exc:
        raise TargetError(f"{directory / RUN_JSON}: {exc}; refused") from None
    named = {r.file for r in verify.results} | {s.file for s in verify.skipped}
    missing = [file for file in wanted if file not in named]
    extra = sorted(named - set(wanted))
    if missing or extra:
        raise TargetError(f"{directory / VERIFY_JSON}: " + "; ".join(
            ([f"{', '.join(missing)}: neither verified nor skipped"] if missing else [])
            + ([f"{', '.join(extra)}: verified but not of the formats asked ({said})"] if extra else []))
            + "; refused")
    considered = [] if selection is None else [c.file for c in selection.candidates] + [
        s.file for s in selection.skipped]
    if any(file not in wanted for file in considered):
        raise TargetError(f"{directory / SELECTION_NAME}: considers "
                          f"{', '.join(f for f in considered if f not in wanted)}, not of the formats asked ({said}); "
                          f"refused")


def _names(formats: tuple[str, ...] | None) -> set[str] | None:
    return None if formats is None else set(formats)


def _check_bench(bench: BenchReport, verify: ParityReport, formats: dict[str, str], where: Path) -> None:
    loaded = {result.file: result.format for result in verify.results}
    for index, result in enumerate(bench.results):
        file = PurePosixPath(result.model).name
        if file not in loaded:
            raise TargetError(f"{where}: results[{index}].model: {file} is not one verify loaded there "
                              f"({', '.join(sorted(loaded)) or 'none'}); refused")
        if result.export_format is not None:
            _check_listed(f"results[{index}]", file, result.export_format, formats, where)


def _check_selection(data: dict[str, Any], selection: Selection, verify: ParityReport, formats: dict[str, str],
                     where: Path) -> None:
    for index, candidate in enumerate(selection.candidates):
        _check_listed(f"candidates[{index}]", candidate.file, candidate.format, formats, where)
    chosen = [c.file for c in selection.candidates if c.chosen]
    if len(chosen) > 1 or data["chosen"] != (chosen[0] if chosen else None):
        raise TargetError(f"{where}: chosen: {data['chosen']!r}, but the candidates marked chosen are "
                          f"{chosen or 'none'}; refused")
    passed = {result.file for result in verify.results if result.passed}
    if chosen and chosen[0] not in passed:
        raise TargetError(f"{where}: chosen: {chosen[0]} did not pass verify there ({where.parent / VERIFY_JSON}); "
                          f"refused")
