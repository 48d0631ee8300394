"""The report's devices: a side-by-side table (this machine first, then each device ``cllnn-export target
run`` brought results back from) and one section per device, in report.json (``devices``), report.md and
report.html.

Each device directory is read through ``export.targets.results.read_devices``, as strictly as a manifest;
one that is refused (malformed, huge, inconsistent) is shown as a device whose results could not be read,
with the reason, and the rest of the report is built as usual. An emulated device's timings are a CPU
emulator's: shown, labelled emulated, and never a choice (select does not run there). A run without
``devices/`` has no device part at all. A device given only some formats (``target run --formats``) says
so, "3 of 8 formats asked", so the files left out read as not asked, not as missing.
"""

from __future__ import annotations

import html
from pathlib import PurePosixPath
from typing import Any

from export.layout import RunLayout
from export.targets.results import DeviceResults, read_devices
from runtime.artifacts.manifest import Manifest
from runtime.checks.parity import ParityReport
from runtime.deploy.choose import Selection
from runtime.machine import machine_line
from runtime.tables import html_table, markdown_table

HOST, DEVICE = "host", "device"  # an entry's role
EMULATED_CHOICE = "none: emulated, its timings choose nothing"
EMULATED_NOTE = ("Emulated (an arm64 Python under qemu-user on the host): its timings are a CPU emulator's, shown "
                 "for reference only and never used to choose; select is not run there.")
UNREADABLE = "results could not be read"
HEADER = ["device", "target", "CPU class", "runtimes", "chosen file", "p50 us (chosen)", "parity (pass / verified)",
          "could not load there"]
FILE_HEADER = ["file", "format", "parity", "top-1 agreement", "max abs", "p50 us", "p99 us", "chosen"]


def device_entries(layout: RunLayout, manifest: Manifest, parity: ParityReport, selection: Selection,
                   bench: dict[str, Any]) -> list[dict[str, Any]]:
    """report.json's ``devices``: this machine's entry, then one per device directory (by name); none
    when the run has no devices."""
    found = read_devices(layout, manifest)
    if not found:
        return []
    listed = list(dict.fromkeys(entry.format for entry in manifest.artifacts))
    return [_host(parity, selection, bench),
            *(_unreadable(name, str(result)) if isinstance(result, Exception) else _device(result, listed)
              for name, result in found)]


def _host(parity: ParityReport, selection: Selection, bench: dict[str, Any]) -> dict[str, Any]:
    machine = bench.get("machine", {})
    chosen = selection.chosen
    return {"name": HOST, "role": HOST, "target": "this machine", "emulated": False, "error": None,
            "cpu_class": machine.get("cpu_class", "?"), "machine": machine_line(machine),
            "runtimes": dict(bench.get("versions", {})), "chosen": chosen and chosen.file,
            "chosen_p50_us": chosen and chosen.p50_us, "choice": selection.verdict, "gate": "parity",
            "parity": _counts(parity), "skipped": _skipped(parity), "files": []}


def _device(device: DeviceResults, listed: list[str]) -> dict[str, Any]:
    """``listed``: the run's formats, so that a device asked for some says how many of them."""
    facts, chosen = device.facts, device.chosen
    timed = {PurePosixPath(r.model).name: r for r in device.bench.results if r.batch == 1}
    files = [{"file": r.file, "format": r.format, "precision": r.precision, "passed": r.passed,
              "first_failing_stage": r.first_failing_stage, "top1_agreement": r.metrics.get("top1_agreement"),
              "max_abs": r.metrics.get("max_abs"), "p50_us": timed[r.file].p50_us if r.file in timed else None,
              "p99_us": timed[r.file].p99_us if r.file in timed else None,
              "chosen": chosen is not None and chosen.file == r.file} for r in device.verify.results]
    return {"name": device.name, "role": DEVICE, "target": device.target, "emulated": device.emulated,
            "error": None, "cpu_class": facts.cpu.cpu_class, "machine": device.machine,
            "system": f"{facts.system} {facts.kernel} ({facts.machine}), glibc {facts.glibc or 'not found'}, "
                      f"{facts.python_implementation} {facts.python}",
            "runtimes": dict(device.bench.versions), "chosen": chosen and chosen.file,
            "chosen_p50_us": chosen and chosen.p50_us,
            "choice": EMULATED_CHOICE if device.selection is None else device.selection.verdict,
            "gate": "verify", "parity": _counts(device.verify), "skipped": _skipped(device.verify),
            "timings": "emulated" if device.emulated else "device", "files": files,
            "formats": None if device.formats is None else list(device.formats), "formats_listed": len(listed)}


def _unreadable(name: str, error: str) -> dict[str, Any]:
    return {"name": name, "role": DEVICE, "error": error}


def _counts(report: ParityReport) -> dict[str, int]:
    return {"passed": sum(r.passed for r in report.results), "verified": len(report.results)}


def _skipped(report: ParityReport) -> list[dict[str, str]]:
    return [{"file": s.file, "format": s.format, "reason": s.reason, "by": s.by} for s in report.skipped]


def table_rows(entries: list[dict[str, Any]], *, html_cells: bool = False) -> list[list[str]]:
    """The side-by-side table: one row per entry, this machine's first; ``html_cells``: every cell
    escaped, and the files that could not load one to a line."""
    rows = []
    for entry in entries:
        if entry["error"] is not None:
            rows.append([entry["name"], UNREADABLE, *["-"] * (len(HEADER) - 3), ["-"]])
        else:
            rows.append(_row(entry))
    if not html_cells:
        return [[*row[:-1], "; ".join(row[-1])] for row in rows]
    return [[*map(_e, row[:-1]), "<br>".join(map(_e, row[-1]))] for row in rows]


def _row(entry: dict[str, Any]) -> list[Any]:
    """A readable entry's cells, the files that could not load there as a list (the last cell)."""
    name = f"{entry['name']} (emulated)" if entry["emulated"] else entry["name"]
    chosen = EMULATED_CHOICE if entry["emulated"] else entry["chosen"] or f"none: {entry['choice']}"
    p50 = "-" if entry["chosen_p50_us"] is None else f"{entry['chosen_p50_us']:,.0f}"
    parity = f"{entry['parity']['passed']} / {entry['parity']['verified']} ({entry['gate']}{_asked(entry, '; ')})"
    skipped = [f"{s['file']}: {s['reason']}" for s in entry["skipped"]] or ["none"]
    return [name, entry["target"], entry["cpu_class"], _versions(entry["runtimes"]), chosen, p50, parity, skipped]


def _asked(entry: dict[str, Any], before: str = "") -> str:
    """"3 of 8 formats asked" for a device given some formats (``--formats``); "" for one given all."""
    if entry.get("formats") is None:
        return ""
    return f"{before}{len(entry['formats'])} of {entry['formats_listed']} formats asked"


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in sorted(versions.items())) or "-"


def _file_rows(entry: dict[str, Any]) -> list[list[str]]:
    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    return [[f["file"], f["format"],
             "pass" if f["passed"] else f"FAIL (first stage past tolerance: {f['first_failing_stage'] or '-'})",
             "-" if f["top1_agreement"] is None else f"{100 * f['top1_agreement']:.1f}%", number(f["max_abs"], ".2e"),
             number(f["p50_us"], ",.0f"), number(f["p99_us"], ",.0f"), "deploy" if f["chosen"] else ""]
            for f in entry["files"]]


def _file_header(entry: dict[str, Any]) -> list[str]:
    """The per-file table's header, its timings labelled as whose they are (``bench`` there, or emulated)."""
    by = "emulated" if entry["emulated"] else "bench there"
    return [f"{h} ({by})" if h in ("p50 us", "p99 us") else h for h in FILE_HEADER]


def _lines(entry: dict[str, Any]) -> list[str]:
    """A device section's paragraphs, as plain sentences (both pages show them)."""
    if entry["error"] is not None:
        return [f"The results in devices/{entry['name']}/ could not be read: {entry['error']}",
                f"Nothing of this device is shown; cllnn-export target run RUN_DIR TARGET --name {entry['name']} "
                f"brings them back again."]
    lines = [f"Target {entry['target']}. {entry['machine']}. {entry['system']}. Runtimes that ran there: "
             f"{_versions(entry['runtimes'])}."]
    if entry["emulated"]:
        lines.append(EMULATED_NOTE)
    elif entry["chosen"] is not None:
        lines.append(f"Chosen there: {entry['chosen']}, p50 {entry['chosen_p50_us']:,.0f} us (select's own timing "
                     f"there): {entry['choice']}.")
    else:
        lines.append(f"Nothing chosen there: {entry['choice']}.")
    parity = entry["parity"]
    lines.append(f"Verify there: {parity['passed']} of {parity['verified']} files pass against the outputs stored "
                 f"at export.")
    if entry.get("formats") is not None:
        lines.append(f"{_asked(entry)} there ({', '.join(entry['formats'])}, target run --formats): the run's "
                     f"other files were not verified, timed or considered there, by choice.")
    every = "Every file of the run" if entry.get("formats") is None else "Every file asked"
    lines.append("Could not load there:" if entry["skipped"] else f"{every} loaded there.")
    return lines


def _could_not_load(entry: dict[str, Any]) -> list[str]:
    return [f"{s['file']} ({s['format']}): {s['reason']}" for s in entry.get("skipped", ())]


def _title(entry: dict[str, Any]) -> str:
    if entry["error"] is not None:
        return f"Device {entry['name']}: {UNREADABLE}"
    return f"Device {entry['name']} ({entry['target']}{', emulated' if entry['emulated'] else ''})"


def devices_markdown(entries: list[dict[str, Any]]) -> list[str]:
    """report.md's device part (nothing when the run has no devices)."""
    if not entries:
        return []
    lines = ["", "## Devices", "", markdown_table(HEADER, table_rows(entries))]
    for entry in entries[1:]:
        lines += ["", f"### {_title(entry)}", ""]
        lines += [part for line in _lines(entry) for part in (line, "")][:-1]
        lines += [f"- {item}" for item in _could_not_load(entry)]
        if entry["error"] is None and entry["files"]:
            lines += ["", markdown_table(_file_header(entry), _file_rows(entry))]
    return lines


def devices_html(entries: list[dict[str, Any]]) -> list[str]:
    """report.html's device part (nothing when the run has no devices); wide tables scroll inside
    themselves (the page's style), so a phone's page does not."""
    if not entries:
        return []
    parts = ["<h2 id='devices'>Devices</h2>",
             "<p>This machine first, then each device the run's files were verified, timed and chosen on "
             "(cllnn-export run --target, or target run), with that device's own cllnn-bench.</p>",
             html_table(HEADER, table_rows(entries, html_cells=True), escape=False)]
    for entry in entries[1:]:
        parts.append(f"<h3>{_e(_title(entry))}</h3>")
        parts += [f"<p{' class=note' if line == EMULATED_NOTE else ''}>{_e(line)}</p>" for line in _lines(entry)]
        if _could_not_load(entry):
            parts.append("<ul>" + "".join(f"<li>{_e(item)}</li>" for item in _could_not_load(entry)) + "</ul>")
        if entry["error"] is None and entry["files"]:
            parts.append(html_table(_file_header(entry), _file_rows(entry)))
    return parts


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
