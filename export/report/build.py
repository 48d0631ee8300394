"""The run's report: ``report.json`` (everything), ``report.md`` (the tables) and
``report.html`` (tables and plots, self-contained: no network, PNG files beside it).

Both pages open with the choice on this machine (``deploy_line``): the file
the select stage put in ``deploy/``, its p50 latency and accuracy on the check
set, and why it was chosen; or why no file was.

Everything is read from what the stages wrote (the files of ``RunLayout``: history, manifest,
parity, bench, selection and each device's results, ``export.report.devices``); nothing is measured
here. Each loads through its typed reader (``runtime.artifacts.history``, ``runtime.artifacts.manifest``,
``runtime.checks.parity``, ``runtime.bench.latency.BenchReport``, ``runtime.deploy.choose``),
so a file of the wrong shape fails here with its own error, not as a missing key. The HTML
carries a small inline script that checks every image loaded and says so on
the page, so a headless browser can verify the report.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from export.layout import SWEEP_PNG, RunLayout
from export.report.devices import device_entries, devices_html, devices_markdown
from export.report.mcu_report import mcu_html, mcu_markdown, mcu_rows
from export.report.sweep_table import HEADER as SWEEP_HEADER
from export.report.sweep_table import SweepRow, table_rows
from export.report.page import IMAGE_CHECK, PAGE, STYLE
from runtime.tables import html_table, markdown_table
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.deploy.choose import TIMED_HERE, Selection
from runtime.artifacts.history import TrainingHistory
from runtime.artifacts.manifest import Manifest, load_manifest
from runtime.bench.latency import BenchReport
from runtime.checks.parity import ArtifactParity, ParityReport
from runtime.machine import machine_line

ERROR_ENTRY = "most error enters at"  # the summary tables' column, quantized files only (runtime.checks.compare)


def write_report(layout: RunLayout, stages: dict[str, dict[str, Any]], data: dict[str, Any],
                 manifest: Manifest | None = None) -> dict[str, Any]:
    """Assemble the report from the stages' files, draw the plots, write all three files.

    ``manifest``: the run's, as its stages held it (``cllnn-export run`` passes it on); else read."""
    from export.report import plots

    parity = ParityReport.load_json(layout.parity_json)
    manifest = manifest if manifest is not None else load_manifest(layout.manifest)
    selection = Selection.load_json(layout.selection)
    report = {
        "deploy": deploy_line(selection),
        "stages": stages,
        "data": data,
        "training": TrainingHistory.load_json(layout.history).to_dict(),
        "manifest": manifest.to_dict(),
        "parity": parity.to_dict(),
        "bench": BenchReport.load_json(layout.bench).to_dict(),
        "selection": selection.to_dict(),
    }
    report["formats"] = format_rows(parity, manifest, report["bench"])
    report["microcontroller"] = mcu_rows(manifest)
    report["devices"] = device_entries(layout, manifest, parity, selection, report["bench"])  # none: []
    if layout.sweep_json.is_file():  # run --sweep: its table and plot, as the sweep wrote them
        report["sweep"] = {**json.loads(layout.sweep_json.read_text()),
                           "plot": (layout.sweep / SWEEP_PNG).relative_to(layout.root).as_posix()}
    plot_dir = layout.plots
    figures = {
        "training": plots.training_curves(report["training"]["epochs"], plot_dir / "training.png"),
        "confusion_trained": plots.confusion(parity.reference_confusion, "trained Keras model",
                                             plot_dir / "confusion_trained.png"),
        "latency": plots.latency_distribution(_batch1_samples(report), plot_dir / "latency.png"),
        "tradeoff": plots.tradeoff(report["formats"], plot_dir / "tradeoff.png"),
    }
    int8 = next((r for r in parity.results if r.precision == "int8" and r.confusion), None)
    if int8 is not None:
        figures["confusion_int8"] = plots.confusion(int8.confusion, f"{int8.format} export",
                                                    plot_dir / "confusion_int8.png")
    report["plots"] = {key: path.relative_to(layout.root).as_posix() for key, path in
                       ((key, plot_dir / name) for key, name in figures.items())}
    write_json_atomic(layout.report_json, report)
    write_bytes_atomic(layout.report_markdown, markdown(report).encode())
    write_bytes_atomic(layout.report_html, html_page(report).encode())
    return report


def format_rows(parity: ParityReport, manifest: Manifest, bench: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per exported format: what the summary table, the markdown and the tradeoff plot show."""
    sizes = {a.format: a.size for a in manifest.artifacts}
    timings = {(r["export_format"], r["batch"]): r for r in bench["results"]}
    large = max((r["batch"] for r in bench["results"]), default=1)
    rows = []
    for result in parity.results:
        fmt, metrics = result.format, result.metrics
        one, many = timings.get((fmt, 1), {}), timings.get((fmt, large), {})
        rows.append({
            "format": fmt,
            "precision": result.precision,
            "size_kib": sizes[fmt] / 1024,
            "accuracy": metrics["accuracy"],
            "top1_agreement": metrics["top1_agreement"],
            "max_abs": metrics["max_abs"],
            "p50_us": one.get("p50_us", math.nan),
            "p99_us": one.get("p99_us", math.nan),
            "throughput_batch": large,
            "throughput_ips": many.get("throughput_ips", math.nan),
            "passed": result.passed,
            "first_failing_stage": result.first_failing_stage,
            "error_entry": result.error_entry_cell,
        })
    return rows


def markdown(report: dict[str, Any]) -> str:
    history, parity, data = report["training"], report["parity"], report["data"]
    rows = report["formats"]
    batch = rows[0]["throughput_batch"] if rows else 64
    lines = [
        "# CLLNN deployment report",
        "",
        f"**{report['deploy']}**",
        "",
        f"Data: {data['source']} (train {data['train']}, val {data['val']}, test {data['test']}); "
        f"test accuracy {history['final']['test_accuracy']:.4f}; "
        f"parity {'PASSED' if parity['passed'] else 'FAILED'} on {parity['images']} images.",
        "",
        markdown_table(
            ["format", "size KiB", "accuracy", "top-1 agreement", "max abs", "p50 us (batch 1)",
             "p99 us (batch 1)", f"images/s (batch {batch})", "parity", ERROR_ENTRY],
            [[row["format"], f"{row['size_kib']:.1f}", f"{row['accuracy']:.4f}",
              f"{100 * row['top1_agreement']:.1f}%", f"{row['max_abs']:.2e}", f"{row['p50_us']:.0f}",
              f"{row['p99_us']:.0f}", _count(row["throughput_ips"]), _verdict(row), row["error_entry"]]
             for row in rows],
        ),
        "",
        _measured_on(report["bench"].get("machine", {})),
        "",
        "## Choice on this machine",
        "",
        _timing_note(report["selection"]),
        "",
        markdown_table(["", "file", "format", *_timing_headers(report["selection"], "us"), "size KiB",
                        "top-1 agreement", "accuracy drop (points)", "reason"], _candidate_rows(report["selection"])),
        "",
        markdown_table(["stage", "ran", "seconds"],
                       [[name, "yes" if s["ran"] else "reused", str(s["seconds"])]
                        for name, s in report["stages"].items()]),
    ]
    lines += devices_markdown(report.get("devices", []))
    lines += mcu_markdown(report.get("microcontroller", []))
    if "sweep" in report:
        lines += ["", "## Precision sweep", "", *sweep_summary(report["sweep"]), "",
                  markdown_table(SWEEP_HEADER, sweep_cells(report["sweep"])), "",
                  f"![accuracy drop vs p50]({report['sweep']['plot']})"]
    lines += ["", "Plots and the full report: report.html (report.json holds every figure)."]
    return "\n".join(lines) + "\n"


def deploy_line(selection: Selection) -> str:
    """The report's opening: what to deploy on this machine and why, or why nothing."""
    cpu_class = selection.cpu.cpu_class
    chosen = selection.chosen
    if chosen is None:
        return f"No file to deploy on this machine ({cpu_class}): {selection.verdict}"
    drop = chosen.accuracy_drop_pp
    relation = f"{drop:.1f} points below" if drop >= 0 else f"{-drop:.1f} points above"
    return (f"Deploy on this machine ({cpu_class}): {chosen.file} — p50 {chosen.p50_us:,.0f} us, "
            f"accuracy {100 * chosen.accuracy:.1f}% ({relation} the trained model on "
            f"{selection.check_set.get('images', '?')} check images), {selection.verdict}")


def _candidate_rows(selection: dict[str, Any]) -> list[list[str]]:
    """One row per file select considered, the chosen one marked, with its reason."""
    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    return [["deploy" if c["chosen"] else "", c["file"], c["format"], us(c["p50_us"]), us(c["p99_us"]),
             f"{c['size_kib']:,.1f}", f"{c['agreement_pct']:.1f}%", f"{c['accuracy_drop_pp']:.1f}",
             c["reason"]] for c in selection["candidates"]]


def _selection_section(selection: dict[str, Any]) -> str:
    settings = selection["settings"]
    limits = ", ".join(f"{name} {value:g}" for name, value in selection["budget"].items() if value is not None)
    return (
        f"<p>Every file verified on this machine against the {selection['check_set'].get('images', '?')} "
        f"check images, the verified ones timed (batch {settings['batch']}, {settings['threads']} thread(s), "
        f"{settings['runs']} runs), and the fastest by p50 within the budget (the parity gate's tolerances"
        f"{'; ' + _e(limits) if limits else ', no size or latency limit'}) copied to <code>deploy/</code> with "
        f"its manifest entry and <code>selection.json</code>. Signature: "
        f"{_e(selection.get('signature', 'not recorded'))}.</p>"
        + f"<p class='note'>{_e(_timing_note(selection))}</p>"
        + html_table(["", "file", "format", *_timing_headers(selection, "µs"), "size (KiB)", "top-1 agreement",
                      "accuracy drop (points)", "reason"], _candidate_rows(selection))
    )


def _timing_note(selection: dict[str, Any]) -> str:
    """Where the choice table's p50 / p99 come from: bench's measurement (one timing per file, as in
    the formats table), or, in a selection that timed the files itself, select's own."""
    source = selection.get("timing", TIMED_HERE)  # a selection written before the field: select timed
    if source == TIMED_HERE:
        return "p50 and p99 in this table: select's own timing (its ranking uses them); the formats table: bench's."
    return f"p50 and p99 in this table: {source}; the same figures as the formats table, which select ranked by."


def _timing_headers(selection: dict[str, Any], unit: str) -> list[str]:
    by = "select" if selection.get("timing", TIMED_HERE) == TIMED_HERE else "bench"
    return [f"p50 {unit} ({by})", f"p99 {unit} ({by})"]


def _measured_on(machine: dict[str, Any]) -> str:
    """Which CPU class the timings came from: they compare only with figures of the same class."""
    return (f"Timings measured on {machine.get('cpu', machine.get('processor', '?'))}, CPU class "
            f"{machine.get('cpu_class', '? (not recorded)')}.")


def html_page(report: dict[str, Any]) -> str:
    """The whole report as one HTML page; images are the PNG files under plots/."""
    parity, history, manifest = report["parity"], report["training"], report["manifest"]
    plots = report["plots"]
    passed = parity["passed"]
    chosen = report["selection"]["chosen"] is not None
    body = [
        "<h1>CLLNN deployment report</h1>",
        f"<p class='verdict {'pass' if chosen else 'fail'}' id='deploy'>{_e(report['deploy'])}</p>",
        f"<p class='verdict {'pass' if passed else 'fail'}'>Parity {'PASSED' if passed else 'FAILED'}: "
        f"{sum(r['passed'] for r in parity['results'])} of {len(parity['results'])} formats within "
        f"tolerance on {parity['images']} {_e(parity['split'])} images.</p>",
        _data_section(report),
        "<h2>All formats</h2>",
        _formats_table(report["formats"]),
        "<h2>Choice on this machine</h2>",
        _selection_section(report["selection"]),
        *devices_html(report.get("devices", [])),
        _figure(plots["tradeoff"], "Max abs error against the trained model vs p50 latency (bench's timing); "
                                   "marker area is the file size."),
        _figure(plots["latency"],
                "Every timed batch-1 call per format (box: quartiles; whiskers: p1 to p99)."),
        *mcu_html(report.get("microcontroller", [])),
        *(_sweep_section(report["sweep"]) if "sweep" in report else []),
        "<h2>Training</h2>",
        f"<p>Test accuracy of the trained model: <b>{history['final']['test_accuracy']:.4f}</b> "
        f"(validation {history['final']['val_accuracy']:.4f}) after {len(history['epochs']['loss'])} "
        f"epochs, {history['timing']['train_seconds']:.1f} s of training, median step "
        f"{history['timing']['median_step_ms']:.1f} ms; {history['trainable_params']:,} trainable "
        f"parameters.</p>",
        _figure(plots["training"], "Loss and accuracy per epoch."),
        "<h2>Confusion matrices</h2>",
        "<div class='row'>",
        _figure(plots["confusion_trained"], "Trained Keras model on the test split."),
        _figure(plots["confusion_int8"], "The int8 export on the same images.")
        if "confusion_int8" in plots else "<p>No int8 format was exported.</p>",
        "</div>",
        "<h2>Parity per format, stage by stage</h2>",
        _parity_section(parity),
        "<h2>What the unroller removed</h2>",
        _unroll_section(manifest),
        "<h2>Stages of this run</h2>",
        html_table(["stage", "ran", "seconds", "key"],
               [[name, "yes" if s["ran"] else "reused (inputs unchanged)", f"{s['seconds']:.1f}",
                 f"<code>{_e(s['key'])}</code>"] for name, s in report["stages"].items()],
               escape=False),
        "<h2>Configuration</h2>",
        _config_section(history["config"]),
        "<h2>Environment</h2>",
        _environment_section(report),
        "<p id='image-check' class='note'>Images: not checked (scripts disabled).</p>",
    ]
    return PAGE.format(style=STYLE, body="\n".join(body), script=IMAGE_CHECK)


def sweep_summary(sweep: dict[str, Any]) -> list[str]:
    """The lines above a sweep table: the machine it was timed on, and how to repeat it."""
    return [f"{machine_line(sweep['machine'])}. Batch 1, one thread, {sweep['bench']['runs']} timed calls "
            f"per file; sorted by p50; `*`: on the Pareto front (top-1 disagreement, p50, size).",
            "", f"Reproduce: `{sweep['command']}`"]


def sweep_cells(sweep: dict[str, Any]) -> list[tuple[str, ...]]:
    return table_rows([SweepRow(**row) for row in sweep["variants"]])


def _sweep_section(sweep: dict[str, Any]) -> list[str]:
    return ["<h2>Precision sweep</h2>",
            "".join(f"<p>{_e(line)}</p>" for line in sweep_summary(sweep) if line),
            html_table(SWEEP_HEADER, sweep_cells(sweep)),
            _figure(sweep["plot"], "Top-1 disagreement with the trained model against p50 latency per precision "
                                   "variant; marker area is the file size; the Pareto front outlined and joined.")]


def _data_section(report: dict[str, Any]) -> str:
    data = report["data"]
    return (
        f"<p>Data: <b>{_e(data['source'])}</b>: train {data['train']:,}, validation {data['val']:,}, "
        f"test {data['test']:,} images (data fingerprint <code>{_e(data.get('fingerprint', '')[:16])}"
        f"</code>). Calibration: {report['manifest']['data'].get('calibration_images', '-')} training "
        f"images; export checks and parity on the test split.</p>"
    )


def _formats_table(rows: list[dict[str, Any]]) -> str:
    batch = rows[0]["throughput_batch"] if rows else 64
    header = ["format", "precision", "size (KiB)", "accuracy", "top-1 agreement", "max abs error",
              "p50 µs (batch 1)", "p99 µs (batch 1)", f"images/s (batch {batch})", "parity", ERROR_ENTRY]
    body = [[row["format"], row["precision"], f"{row['size_kib']:,.1f}", f"{row['accuracy']:.4f}",
             f"{100 * row['top1_agreement']:.1f}%", f"{row['max_abs']:.2e}", f"{row['p50_us']:,.0f}",
             f"{row['p99_us']:,.0f}", _count(row["throughput_ips"]), _verdict(row), row["error_entry"]]
            for row in rows]
    return html_table(header, body)


def _parity_section(parity: dict[str, Any]) -> str:
    parts = []
    for result in parity["results"]:
        verdict = "pass" if result["passed"] else "FAIL"
        checks = ", ".join(
            f"{c['name']} {c['value']:.3g} {c['rule']} {c['limit']:.3g} ({'ok' if c['passed'] else 'FAIL'})"
            for c in result["checks"]
        )
        parts.append(f"<h3>{_e(result['format'])}: {verdict}</h3><p class='note'>{_e(checks)}</p>")
        entry = ArtifactParity.from_dict(result).error_entry
        if entry is not None:
            parts.append(f"<p>Most error enters at: <b>{_e(entry.describe())}</b>; the stage to keep at "
                         f"higher precision first.</p>")
        if result["stages"]:
            parts.append(html_table(
                ["stage", "max abs", "normalised RMSE", "limit", "verdict"],
                [[s["stage"], f"{s['max_abs']:.2e}", f"{s['nrmse']:.2e}", f"{s['limit']:.2e}",
                  "ok" if s["passed"] else "FAIL"] for s in result["stages"]],
            ))
        elif result.get("stage_note"):
            parts.append(f"<p class='note'>{_e(result['stage_note'])}</p>")
    return "\n".join(parts)


def _unroll_section(manifest: dict[str, Any]) -> str:
    unroll = manifest.get("unroll", {})
    items = unroll.get("items", [])
    total_bytes = sum(i["weight_bytes"] for i in items)
    total_macs = sum(i["macs_per_image"] for i in items)
    equivalence = ", ".join(f"{k} {v:.1e}" for k, v in unroll.get("equivalence_max_abs", {}).items())
    return (
        f"<p>The recurrent layers were written out as static ops; work that only multiplies the "
        f"zero initial states was left out: <b>{total_bytes:,} weight bytes</b> and "
        f"<b>{total_macs:,} multiply-accumulates per image</b>. Unrolled vs trained, max abs per "
        f"stage: {_e(equivalence)}.</p>"
        + html_table(["left out", "why", "weight bytes", "MACs / image"],
                 [[i["what"], i["why"], f"{i['weight_bytes']:,}", f"{i['macs_per_image']:,}"]
                  for i in items])
    )


def _config_section(config: dict[str, Any]) -> str:
    rows = [[section, key, json.dumps(value)] for section, values in config.items()
            for key, value in values.items()]
    return html_table(["section", "key", "value"], rows)


def _environment_section(report: dict[str, Any]) -> str:
    bench = report["bench"]
    machine = bench.get("machine", {})
    versions = {**report["training"].get("versions", {}), **bench.get("versions", {})}
    settings = bench.get("settings", {})
    rows = [
        ["CPU", machine.get("cpu", machine.get("processor", "?"))],
        ["CPU class", machine.get("cpu_class", "?")],
        ["ISA", " ".join(machine["cpu_isa"]) if machine.get("cpu_isa") is not None else "not recorded"],
        ["logical cores", str(machine.get("cpu_count", "?"))],
        ["benchmark threads", str(settings.get("threads", 1))],
        ["platform", machine.get("platform", "?")],
    ] + [[name, version] for name, version in sorted(versions.items())]
    return html_table(["", ""], rows)


def _figure(src: str, caption: str) -> str:
    return f"<figure><img src='{_e(src)}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure>"


def _count(value: float) -> str:
    """A figure not measured (a file timed at batch 1 only) is "-", not "nan"."""
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _verdict(row: dict[str, Any]) -> str:
    if row["passed"]:
        return "pass"
    return f"FAIL (first stage past tolerance: {row['first_failing_stage'] or '-'})"


def _batch1_samples(report: dict[str, Any]) -> dict[str, list[float]]:
    return {r["export_format"]: r["samples_us"] for r in report["bench"]["results"]
            if r["batch"] == 1 and r.get("samples_us")}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
