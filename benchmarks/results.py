"""RESULTS.md and the plots, from the suite's results (``results.json``): nothing is measured here.

One top-level section per CPU class in results.json (benchmarks/store.py).
Every ratio is computed from figures measured side by side in the same
section of the same run, so never across classes; the targets of issue 7 are
reported as they stand, per class.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from benchmarks import store
from benchmarks.targets import targets
from cllnn_edge.versions import library_versions
from export.formats.registry import TFLITE_FP32
from runtime.tables import markdown_table
from runtime.atomic import write_bytes_atomic
from runtime.bench.latency import environment
from runtime.machine import CpuInfo

COMMANDS = {
    "inference": "python -m benchmarks.inference --work runs/bench --json inference.json",
    "floor": "python -m benchmarks.floor --work runs/bench --json floor.json",
    "training": "python -m benchmarks.training --json training.json",
    "scaling": "python -m benchmarks.scaling --work runs/bench --json scaling.json",
    "memory": "python -m benchmarks.memory --work runs/bench --json memory.json",
}


def machine() -> dict[str, Any]:
    env = environment()
    return {**env["machine"], "versions": library_versions()}


def write_results(results: dict[str, Any], out: Path) -> None:
    """RESULTS.md: one top-level section per CPU class in ``results`` (benchmarks/store.py's
    layout, or the first one), each with its own tables, targets and plots."""
    results = store.migrate(results)
    classes = sorted(results["classes"].items(),  # by name; classes of unrecorded ISA last
                     key=lambda item: (item[1]["machine"].get("cpu_isa") is None, item[0]))
    parts = [_title(classes)]
    for name, run in classes:
        parts.append(_cpu_class(name, run, out / "plots" / _slug(name)))
    parts.append(_commands())
    text = "\n\n".join(parts)
    while "\n\n\n" in text:  # sections leave out plots that were not drawn
        text = text.replace("\n\n\n", "\n\n")
    write_bytes_atomic(out / "RESULTS.md", (text.rstrip() + "\n").encode())


def _cpu_class(name: str, run: dict[str, Any], plot_dir: Path) -> str:
    sections = {**run["sections"], "_cpu_count": run["machine"].get("cpu_count")}
    plots = draw_plots(sections, plot_dir)
    parts = [_class_header(name, run), _targets(sections, CpuInfo.from_record(run["machine"]).int8_dot)]
    renderers = {"inference": _inference, "floor": _floor,
                 "training": lambda secs, plots: _training(secs, plots, run["model"]),
                 "scaling": _scaling, "memory": _memory}
    for section, render in renderers.items():
        if section in sections:
            parts.append(render(sections, plots))
    return "\n\n".join(parts)


def _targets(sections: dict[str, Any], int8_dot: bool | None) -> str:
    rows = [[target, value, "met" if ok else "**not met**"] for target, value, ok in targets(sections, int8_dot)]
    return ("### Targets (issues 7 and 12), as measured\n\n"
            + markdown_table(["target", "measured", "status"], rows))


# --- sections -------------------------------------------------------------------------------


def _inference(sections: dict[str, Any], plots: dict[str, str]) -> str:
    inference = sections["inference"]
    rows = sorted(inference["batch1"]["rows"].items(), key=lambda item: item[1]["p50_us"])
    table = markdown_table(["path (batch 1, one thread)", "p50", "p99", "calls", "x the fastest"],
                   [[name, _us(r["p50_us"]), _us(r["p99_us"]), str(r["calls"]), f"{r['vs_best']:,.1f}x"]
                    for name, r in rows])
    throughput = inference["throughput"].values()
    formats = sorted({r["format"] for r in throughput})
    by_key = {(r["format"], r["threads"], r["batch"]): r for r in throughput}
    rate_rows = [[fmt] + [f"{by_key[(fmt, t, b)]['images_per_s']:,.0f}" for b in (1, 64) for t in (1, 2)]
                 + [f"{by_key[(fmt, 2, 64)]['images_per_s'] / by_key[(fmt, 1, 64)]['images_per_s']:.2f}x"]
                 for fmt in formats]
    return "\n\n".join([
        "### 1. Inference: every format against the Keras paths",
        "Interleaved rounds in one process; `runtime` calls include input checks, "
        "quantization and dequantization; TensorFlow on one intra-op and one inter-op thread; "
        "the seed-form model gets inputs already standardised (its scaler runs outside, in its favour).",
        table,
        "Throughput through `runtime` (images per second, random uint8 images):",
        markdown_table(["format", "batch 1, 1 thread", "batch 1, 2 threads", "batch 64, 1 thread",
                "batch 64, 2 threads", "2 threads / 1 at batch 64"], rate_rows),
        "Time per image (p50 of the call / batch size), one thread, against batch size:",
        _batch_table(inference["batch_scaling"].values()),
        _image(plots, "batch", "Time per image against batch size, one thread."),
    ])


def _batch_table(rows: Any) -> str:
    rows = list(rows)
    batches = sorted({r["batch"] for r in rows})
    per_image = {(r["format"], r["batch"]): r["us_per_image"] for r in rows}
    formats = sorted({r["format"] for r in rows})
    return markdown_table(["format"] + [f"batch {b}" for b in batches],
                  [[fmt] + [_us(per_image.get((fmt, b))) for b in batches] for fmt in formats])


def _floor(sections: dict[str, Any], plots: dict[str, str]) -> str:
    floor = sections["floor"]
    batch1 = sections.get("inference", {}).get("batch1", {}).get("rows", {})
    peaks = floor["peaks"]
    peak_rows = [[kind, f"{p['macs_per_s'] / 1e9:.1f} G", p.get("method", "")] for kind, p in peaks.items()]
    if floor.get("numpy"):
        peak_rows.append(["float32 (numpy matmul, 1 thread)",
                          f"{floor['numpy']['macs_per_s'] / 1e9:.1f} G", floor["numpy"].get("method", "")])
    rows = []
    for fmt, figures in floor["formats"].items():
        p50 = batch1.get(f"runtime {fmt}", {}).get("p50_us")
        rows.append([fmt, f"{figures['macs']:,}", figures["peak_kind"], _us(figures["floor_us"]),
                     _us(p50) if p50 else "-", f"{p50 / figures['floor_us']:.1f}x" if p50 else "-"])
    parts = [
        "### 2. The compute floor",
        "MACs per image counted from each exported graph (ops and tensor shapes), this machine's "
        "single-core peak measured by a probe through the same runtime, and each format's p50 "
        "(section 1) as a multiple of MACs / peak.",
        markdown_table(["probe", "MACs / s", "how"], peak_rows),
        markdown_table(["format", "MACs / image", "peak used", "floor", "p50", "p50 / floor"], rows),
    ]
    reference = next(iter(floor["formats"].values()), None)
    if reference:
        total = max(1, reference["macs"])
        parts.append("Where the MACs are (" + next(iter(floor["formats"])) + "):")
        parts.append(markdown_table(["op", "MACs", "share"],
                            [[op, f"{m:,}", f"{100 * m / total:.1f}%"]
                             for op, m in sorted(reference["by_op"].items(), key=lambda kv: -kv[1])]))
    for fmt, profile in floor.get("profiles", {}).items():
        ops = sorted(profile["ops"], key=lambda o: -o["share"])[:8]
        parts.append(f"#### Where the time goes: {fmt}")
        parts.append(f"Method: {profile['method']}.")
        parts.append(markdown_table(["op type", "us per run", "share of time", "share of MACs"],
                            [[o["op"], "-" if o.get("us") is None else f"{o['us']:.1f}",
                              f"{100 * o['share']:.1f}%",
                              f"{100 * o['mac_share']:.1f}%" if "mac_share" in o else "-"] for o in ops]))
        nodes = sorted(profile.get("nodes", []), key=lambda n: -(n.get("us") or 0))[:5]
        if nodes:
            parts.append(markdown_table(["slowest nodes", "us per run", "MACs", "GMAC/s"],
                                [[f"{n['op']} {n.get('node', '#' + str(n.get('index', '')))}",
                                  f"{n['us']:.1f}", f"{n['macs']:,}" if n.get("macs") else "-",
                                  _gmacs(n)]
                                 for n in nodes]))
        reading = _time_reading(fmt, profile, floor)
        if reading:
            parts.append(reading)
        if profile.get("note"):
            parts.append(f"({profile['note']})")
    return "\n\n".join(parts)


def _time_reading(fmt: str, profile: dict[str, Any], floor: dict[str, Any]) -> str:
    """A sentence from the profile's figures: how fast the MAC-bearing ops run against the
    peak, and how much time goes to ops that do no MACs."""
    figures = floor["formats"].get(fmt)
    nodes = [n for n in profile.get("nodes", []) if n.get("us") is not None]
    if not figures or not nodes or "macs" not in nodes[0]:
        return ""
    mac_us = sum(n["us"] for n in nodes if n["macs"])
    other_us = sum(n["us"] for n in nodes if not n["macs"])
    total = max(mac_us + other_us, 1e-9)
    peak = floor["peaks"][figures["peak_kind"]]["macs_per_s"]
    achieved = figures["macs"] / (mac_us * 1e-6) if mac_us > 0 else float("nan")
    return (f"Reading: the ops that do the {figures['macs']:,} MACs take {mac_us:.0f} us, "
            f"{achieved / 1e9:.0f} GMAC/s against the {figures['peak_kind']} probe's {peak / 1e9:.0f}; "
            f"ops with no MACs (quantize, pooling, activations, reshapes) take {other_us:.0f} us "
            f"({100 * other_us / total:.0f}% of the profiled time), and one invoke of an empty file "
            f"costs {profile.get('empty_us', float('nan')):.1f} us.")


def _training(sections: dict[str, Any], plots: dict[str, str], model: dict[str, Any]) -> str:
    training = sections["training"]
    speed, accuracy = training["speed"], training["accuracy"]
    rows = [[name, f"{r['median_step_ms']:.1f} ms", f"{r['epoch_ms_per_step']:.1f} ms",
             f"{r['epoch_s_full_embedded']:.2f} s"] for name, r in speed["rows"].items()]
    rows.append(["cllnn_edge / seed", f"{speed['step_ratio']:.2f}x", f"{speed['epoch_ratio']:.2f}x", ""])
    settings = speed["settings"]
    accuracy_rows = [[str(r["seed"]), f"{r['cllnn_edge']:.4f}", f"{r['seed_code']:.4f}"]
                     for r in accuracy["runs"]]
    return "\n\n".join([
        "### 3. Training: cllnn_edge against the seed's code",
        f"Batch {settings['batch']}, {settings['rounds']} alternating rounds of a "
        f"{settings['steps']}-step epoch per model, same batches; TensorFlow's default threads.",
        markdown_table(["model", "median step", "epoch wall time per step", "seconds per embedded epoch"], rows),
        f"Test accuracy ({accuracy['test_images']} embedded test images) after {accuracy['epochs']} "
        "epochs from the same seed, each trained its own way:",
        markdown_table(["seed", "cllnn_edge", "seed's code"], accuracy_rows),
        _training_reading(sections, model),
    ])


def _training_reading(sections: dict[str, Any], model: dict[str, Any]) -> str:
    """How close a training step runs to the machine's float32 peak, by the usual estimate of
    3x the forward MACs per image (forward, gradient to inputs, gradient to weights)."""
    floor = sections.get("floor", {}).get("formats", {}).get(TFLITE_FP32.name)
    if not floor:
        return ""
    removed = sum(i["macs_per_image"] for i in model["manifest"].get("unroll", {}).get("items", []))
    forward = floor["macs"] + removed  # Keras still multiplies the zero initial states
    speed = sections["training"]["speed"]
    step_s = speed["rows"]["cllnn_edge"]["median_step_ms"] / 1e3
    achieved = 3 * forward * speed["settings"]["batch"] / step_s
    cores = sections.get("_cpu_count") or 1
    peak = sections["floor"]["peaks"]["float32"]["macs_per_s"] * cores
    return (f"Reading: a step does about 3 x {forward:,} MACs per image (forward, then the "
            f"gradients to inputs and to weights) x {speed['settings']['batch']} images, "
            f"{3 * forward * speed['settings']['batch'] / 1e9:.2f} G MACs in {1e3 * step_s:.1f} ms: "
            f"{achieved / 1e9:.0f} GMAC/s against {peak / 1e9:.0f} GMAC/s for {cores} core(s) at the "
            f"float32 probe's peak ({100 * achieved / peak:.0f}%). Both models do the same "
            "convolutions, which hold ~90% of the MACs, so their step times can only differ by the "
            "rest.")


def _scaling(sections: dict[str, Any], plots: dict[str, str]) -> str:
    scaling = sections["scaling"]
    rows = []
    for row in scaling["rows"]:
        for fmt, f in row["formats"].items():
            rows.append([str(row["reservoir_dim"]), str(row["sequence_length"]), fmt,
                         f"{f['size_kib']:,.0f} KiB", _us(f["p50_us"]), f"{f['max_abs']:.2e}",
                         f"{100 * f['top1_agreement']:.1f}%",
                         "-" if f["worst_stage_nrmse"] is None else f"{f['worst_stage_nrmse']:.2e}",
                         "pass" if f["passed"] else "FAIL", f"{row['test_accuracy']:.3f}"])
    return "\n\n".join([
        "### 4. Scaling with the reservoir and the sequence",
        f"Each point trained {scaling['epochs']} epoch(s) on the embedded digits, exported and "
        "checked by `cllnn-export run`; latency at batch 1, one thread. (Batch size: the per-image "
        "table and plot of section 1.)",
        markdown_table(["reservoir_dim", "sequence_length", "format", "size", "p50", "max abs error",
                "top-1 agreement", "worst stage nRMSE", "parity", "test accuracy"], rows),
        _image(plots, "reservoir", "Against reservoir_dim (sequence length 1)."),
        _image(plots, "sequence", "Against sequence_length (reservoir 512)."),
    ])


def _memory(sections: dict[str, Any], plots: dict[str, str]) -> str:
    memory = sections["memory"]
    tf = memory["tensorflow"]
    rows = [[fmt, f"{f['file_size'] / 1024:,.1f} KiB", f"{f['peak_rss_mib']:.1f} MiB",
             f"{100 * f['vs_tensorflow']:.1f}%", "yes" if f["imported_tensorflow"] else "no"]
            for fmt, f in memory["formats"].items()]
    rows.append(["Keras model (TensorFlow)", f"{tf['file_size'] / 1024:,.1f} KiB",
                 f"{tf['peak_rss_mib']:.1f} MiB", "100%", "yes"])
    return "\n\n".join([
        "### 5. Size and memory",
        f"Peak resident memory (VmHWM) of a fresh process that loads one file and predicts "
        f"{memory['calls']} times, through `runtime` or through TensorFlow.",
        markdown_table(["format", "file size", "peak RSS", "of TensorFlow's", "imported TensorFlow"], rows),
    ])


def _title(classes: list[tuple[str, dict[str, Any]]]) -> str:
    listing = "\n".join(f"- {name}: {run['machine'].get('cpu', '?')} (sections "
                         f"{', '.join(sorted(k for k in run['sections'] if not k.startswith('_')))})"
                         for name, run in classes)
    return (
        "# Benchmark results\n\n"
        "One section per CPU class measured. An int8 kernel's speed against float32 depends on the "
        "CPU's instruction sets (VNNI on x86, the dot-product instructions on ARM), so every ratio "
        "and target below is computed within one class, from figures measured side by side in one "
        "section of one run; no figure is compared across classes. Classes measured:\n\n" + listing
    )


def _class_header(name: str, run: dict[str, Any]) -> str:
    m = run["machine"]
    cpu = CpuInfo.from_record(m)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
    quick = ("\n\n**Quick mode (`--quick`): a smoke run (one training epoch, a few calls, a tiny "
             "scaling point, two processes at a time); these numbers mean nothing.**"
             if run["quick"] else "")
    cpus = {section.get("cpu") for section in run["sections"].values()}
    when = "; ".join(
        f"{section_name} {section.get('measured', '?')} ({section.get('seconds', 0):.0f} s"
        + (f", {section.get('cpu', '?')}" if len(cpus) > 1 else "") + ")"
        for section_name, section in run["sections"].items() if not section_name.startswith("_")
    )
    isa = (f"{cpu.isa_line}: {run['migrated']}" if run.get("migrated") else cpu.isa_line)
    return (
        f"## CPU class: {name}\n\n"
        f"**{isa}.** Machine: {cpu.model}, {m['cpu_count']} logical cores, {m['platform']}; {versions}. "
        f"Written by `{run['command']}`, which took {run['seconds'] / 60:.1f} min. "
        f"Sections measured: {when}. Shared and noisy: absolute times drift between runs; the ratios, "
        "measured side by side within one section, much less." + quick
    )


def _commands() -> str:
    lines = ["make bench  # = .venv/bin/python -m benchmarks: the whole suite, this file",
             "            # (it first runs cllnn-export run --data embedded --out runs/bench: reused "
             "when unchanged)"]
    lines += [f".venv/bin/{command}" for command in COMMANDS.values()]
    return ("## Reproducing\n\nThe suite, or one section alone (each writes JSON; "
            "the suite renders it under this machine's CPU class, leaving other classes as they "
            "are):\n\n```bash\n" + "\n".join(lines) + "\n```")


# --- plots ----------------------------------------------------------------------------------


def draw_plots(sections: dict[str, Any], directory: Path) -> dict[str, str]:
    """PNG files for the sections that ran; name -> path relative to RESULTS.md."""
    import matplotlib.pyplot as plt

    from export.report.plots import save_png  # selects the headless backend

    def save(figure: Any, name: str) -> str:
        return f"{directory.parent.name}/{directory.name}/{save_png(figure, directory / name, dpi=100)}"

    plots = {}
    if "inference" in sections:
        figure, axis = plt.subplots(figsize=(6.5, 4))
        series: dict[str, list[tuple[int, float]]] = {}
        for row in sections["inference"]["batch_scaling"].values():
            series.setdefault(row["format"], []).append((row["batch"], row["us_per_image"]))
        for fmt, points in sorted(series.items()):
            points.sort()
            axis.plot(*zip(*points), marker="o", label=fmt)
        axis.set(xscale="log", yscale="log", xlabel="batch size", ylabel="p50 microseconds per image",
                 title="time per image against batch size (one thread)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
        plots["batch"] = save(figure, "batch.png")
    if "scaling" in sections:
        rows = sections["scaling"]["rows"]
        for key, axis_name, fixed in (("reservoir", "reservoir_dim", ("sequence_length", 1)),
                                      ("sequence", "sequence_length", ("reservoir_dim", 512))):
            chosen = sorted((r for r in rows if r[fixed[0]] == fixed[1]), key=lambda r: r[axis_name])
            if len(chosen) < 2:
                continue
            figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
            for fmt in chosen[0]["formats"]:
                x = [r[axis_name] for r in chosen]
                axes[0].plot(x, [r["formats"][fmt]["p50_us"] for r in chosen], marker="o", label=fmt)
                axes[1].plot(x, [r["formats"][fmt]["size_kib"] for r in chosen], marker="o", label=fmt)
                axes[2].plot(x, [r["formats"][fmt]["max_abs"] for r in chosen], marker="o", label=fmt)
            for axis, label in zip(axes, ("p50 latency (us)", "file size (KiB)", "max abs error vs Keras")):
                axis.set(xlabel=axis_name, ylabel=label)
                axis.grid(alpha=0.3, which="both")
                axis.legend(fontsize=8)
                if key == "reservoir":
                    axis.set_xscale("log", base=2)
            axes[2].set_yscale("log")
            plots[key] = save(figure, f"scaling_{key}.png")
    return plots


# --- formatting -----------------------------------------------------------------------------


def _us(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value / 1000:,.1f} ms" if value >= 10_000 else f"{value:,.0f} us"


def _gmacs(node: dict[str, Any]) -> str:
    """A profiled node's achieved GMAC/s (MACs / microseconds / 1e3)."""
    return f"{node['macs'] / node['us'] / 1e3:.1f}" if node.get("macs") and node["us"] > 0 else "-"


def _slug(name: str) -> str:
    """A CPU class as a directory name: "x86-64 AVX-512 VNNI" -> "x86-64-avx-512-vnni"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _image(plots: dict[str, str], key: str, caption: str) -> str:
    return f"![{caption}]({plots[key]})\n\n{caption}" if key in plots else ""

