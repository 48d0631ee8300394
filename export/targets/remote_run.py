"""``cllnn-export target run RUN_DIR TARGET``: a run's files verified, timed and chosen on the device
itself, with the same code as on the host, and the device's own verdicts and timings brought back.

Steps: probe the device (``probe``), make the offline bundle for its platform and Python
(``bundle``, cached), send the bundle's files the device does not already hold whole (a re-run after
a cut transfer sends only what is missing or differs), install it there (``install.py``: an
environment renamed into place when complete), then run ``cllnn-bench verify``, ``cllnn-bench`` on
the files verify could load, and ``cllnn-bench select`` in that environment. The result files are
fetched with a size limit, read back through their typed readers (a malformed answer is refused),
and placed in ``RUN_DIR/devices/NAME/`` in one rename.

``formats`` (``--formats``): verify, bench and select there take only those formats' files, checked
against the run's manifest before the device is contacted; the bundle still carries every file (the
manifest and its signature stay whole), and ``target.json`` records the names asked.

An emulated device's timings say nothing about a real board: they are kept, marked ``emulated``, and
select is not run there (it would choose by latency).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from export.errors import TargetError
from export.layout import RunLayout
from export.targets import install as installer
from export.targets.bundle import make_bundle
from export.targets.connect import open_device
from export.targets.device import Device, cache_home
from export.targets.probe import DeviceFacts, probe
from export.targets.results import (BENCH_JSON, MAX_RESULT_BYTES, PROBE_JSON, RUN_JSON, VERIFY_JSON, DeviceResults,
                                    parse_result, read_device, target_record)
from export.targets.runtime_pin import DeviceRuntime, RuntimeChoice, RuntimePin
from export.targets.spec import TargetSpec
from export.targets.wheels import parse_platform
from runtime.artifacts.manifest import (Manifest, ManifestError, format_names, parse_manifest, read_manifest_at,
                                        sha256_bytes)
from runtime.atomic import write_json_atomic
from runtime.bench.latency import BenchReport
from runtime.checks.parity import ParityReport
from runtime.deploy.choose import SELECTION_NAME, Selection

Progress = Callable[[str], None]
# Under emulation a call takes 10-100x a board's, and its figure says nothing about one: fewer calls.
EMULATED_BENCH = ("--runs", "20", "--warmup", "2")
CLI = ("-m", "runtime.cli.main")  # cllnn-bench, as a module: an emulated device runs ELF programs only
REMOTE_BUNDLES, REMOTE_RESULTS = PurePosixPath("bundles"), PurePosixPath("results")
# On the device, before a bundle's files are sent: its bundle.json removed (a half-updated directory is
# no bundle), files the new bundle does not list removed (the installer refuses strays), and the SHA-256
# of every file kept printed (those that match are not sent again). Standard library only.
PREPARE = """import hashlib, json, os, sys
root, wanted = sys.argv[1], set(json.loads(sys.argv[2]))
os.makedirs(root, exist_ok=True)
held = {}
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root).replace(os.sep, '/')
        if rel not in wanted:
            os.remove(p)
            continue
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            for b in iter(lambda: f.read(1 << 20), b''):
                h.update(b)
        held[rel] = h.hexdigest()
print(json.dumps(held))
"""


@dataclass(frozen=True)
class DeviceRun(DeviceResults):
    """What one device said of a run's files (``DeviceResults``, as the report reads them back), and how
    this round trip went."""

    sent: int = 0  # bundle files sent this time (0: the device held them all)
    runtime: RuntimePin | None = None  # what verify, bench and select ran with (None: the verified versions)


def run_on_target(run_dir: Path, spec: TargetSpec, name: str, *, progress: Progress = lambda line: None,
                  runtime: RuntimeChoice = None, formats: Sequence[str] | None = None) -> DeviceRun:
    """Verify, time and (on a real device) choose ``run_dir``'s files on ``spec``'s device; ``runtime``:
    a ``RuntimePin`` (``--runtime``) or ``USE_DEVICE_RUNTIME`` makes the bundle bring that release and
    the device's cllnn-bench run with it (None: the versions the files were verified with); ``formats``:
    only those formats' files (None: all), a name the run's manifest lacks a ``TargetError`` before any
    contact."""
    layout = RunLayout(Path(run_dir))
    if not layout.manifest.is_file():
        raise TargetError(f"{run_dir}: no {layout.manifest.relative_to(layout.root)}: not a run directory with artefacts")
    path, raw = read_manifest_at(layout.manifest)  # read once: checked, hashed for the bundle, placed against
    manifest = parse_manifest(raw, path)
    asked = asked_formats(manifest, formats, path)
    device = open_device(spec)
    facts = probe(device)
    progress(f"{name}: {facts.cpu.cpu_class}, Python {facts.python}")
    pin = RuntimePin.of_device(spec.text, facts.packages) if isinstance(runtime, DeviceRuntime) else runtime
    if pin is not None:
        pin.check_python(spec.text, facts.python_version)  # before any download
        progress(f"runtime: {pin} ({pin.origin}): verify, bench and select run with it")
    bundle = _bundle_for(layout, sha256_bytes(raw), facts, progress, pin)
    remote, sent = _send(device, bundle, progress)
    progress("install: the bundle into an environment of its own there (pip --no-index; minutes when emulated)")
    env_python = _install(device, remote)
    results = REMOTE_RESULTS / name
    device.checked([device.python, "-c", "import os, sys; os.makedirs(sys.argv[1], exist_ok=True)", str(results)],
                   what="making its results directory")
    backend = ("--tflite-backend", pin.tflite_backend) if pin is not None and pin.tflite_backend else ()
    chosen = backend + (() if asked is None else ("--formats", ",".join(asked)))
    verify = _verify(device, env_python, remote, results, progress, chosen)
    bench = _bench(device, env_python, remote, results, verify, progress, backend)
    selection = None if spec.emulated else _select(device, env_python, remote, results, progress, chosen)
    run = DeviceRun(name, spec.text, spec.emulated, layout.device(name), facts, verify, bench, selection, asked,
                    sent=sent, runtime=pin)
    _place(run, manifest)
    return run


def asked_formats(manifest: Manifest, formats: Sequence[str] | str | None, where: Path) -> tuple[str, ...] | None:
    """``formats`` (``--formats``: a comma-separated list or names) checked against the run's manifest (at
    ``where``): the names, each once; None: every file. A name it does not hold is a ``TargetError``
    naming those it does."""
    names = format_names(formats)
    try:
        manifest.entries_of(names)
    except ManifestError as exc:
        raise TargetError(f"{where}: {exc}") from None
    return names


def _bundle_for(layout: RunLayout, manifest_sha: str, facts: DeviceFacts, progress: Progress,
                pin: RuntimePin | None) -> Path:
    platform = parse_platform(f"{facts.system.lower()}-{facts.machine}")
    if pin is not None:  # a pinned release may have wheels only for a newer glibc: the device's own bounds it
        platform = platform.reaching(facts.glibc)
    python = ".".join(str(part) for part in facts.python_version)
    pinned = () if pin is None else (pin.requirement, *pin.companions)
    suffix = "" if pin is None else f"-{pin.package}-{pin.version}"
    out = cache_home() / "bundles" / f"{platform.name}-py{python}-{manifest_sha[:16]}{suffix}"
    result = make_bundle(layout.root, platform, python, out, pins=pinned, progress=progress,
                         flag=pin.origin if pin is not None else "--pin")
    progress(f"bundle: {result.files} files, {result.bytes / 2**20:.1f} MiB, {result.downloaded} wheels downloaded")
    return out


def _send(device: Device, bundle: Path, progress: Progress) -> tuple[PurePosixPath, int]:
    """Put the bundle's files on the device under ``bundles/NAME`` (the bundle's name: its platform,
    Python and run), each one the device does not already hold with the right hash, so a re-run after a
    cut transfer or a changed wheel sends only what is missing or differs; bundle.json last, so it
    marks a bundle sent whole."""
    raw = (bundle / installer.BUNDLE_JSON).read_bytes()
    remote = REMOTE_BUNDLES / bundle.name
    files = [(f["path"], f["sha256"]) for f in json.loads(raw)["files"]]
    held = _held(device, remote, [path for path, _ in files])
    missing = [path for path, sha in files if held.get(path) != sha]
    for index, path in enumerate(missing, start=1):
        device.put(bundle / path, remote / path)
        progress(f"sent [{index}/{len(missing)}] {path}")
    device.put(bundle / installer.BUNDLE_JSON, remote / installer.BUNDLE_JSON)
    return remote, len(missing)


def _held(device: Device, remote: PurePosixPath, wanted: list[str]) -> dict[str, str]:
    done = device.checked([device.python, "-c", PREPARE, str(remote), json.dumps(wanted)],
                          what="preparing the bundle's directory")
    return _json_object(done.stdout, device, "the list of held files")


def _install(device: Device, remote: PurePosixPath) -> str:
    done = device.checked([device.python, str(remote / installer.INSTALLER), "--json"], what="installing the bundle",
                          timeout=1800)
    answer = _json_object(done.stdout, device, "install.py's answer")
    if not isinstance(answer.get("env"), str):
        raise TargetError(f"target {device.spec.text}: install.py answered without an environment: {answer}")
    return f"{answer['env']}/bin/python"


def _verify(device: Device, python: str, remote: PurePosixPath, results: PurePosixPath,
            progress: Progress, flags: tuple[str, ...]) -> ParityReport:
    artifacts = str(remote / installer.ARTIFACTS_DIR)
    which = "the files of the formats asked" if "--formats" in flags else "every file"
    progress(f"verify: cllnn-bench verify there, {which} against the check set's stored outputs")
    _run_cli(device, [python, *CLI, "verify", artifacts, *flags, "--json", str(results / VERIFY_JSON)], "verify",
             ok=(0, 1))
    report = ParityReport.from_dict(_fetch_json(device, results / VERIFY_JSON, "verify"))
    progress(f"verify: {sum(r.passed for r in report.results)}/{len(report.results)} files pass, "
             f"{len(report.skipped)} skipped (this device's runtime cannot load them)")
    return report


def _bench(device: Device, python: str, remote: PurePosixPath, results: PurePosixPath, verify: ParityReport,
           progress: Progress, backend: tuple[str, ...]) -> BenchReport:
    files = [str(remote / installer.ARTIFACTS_DIR / r.file) for r in verify.results]
    if not files:
        raise TargetError(f"target {device.spec.text}: its runtimes load none of the run's files: "
                          + "; ".join(f"{s.file}: {s.reason}" for s in verify.skipped))
    settings = EMULATED_BENCH if device.spec.emulated else ()
    progress(f"bench: cllnn-bench there, {len(files)} files at batch 1")
    _run_cli(device, [python, *CLI, *files, *settings, *backend, "--json", str(results / BENCH_JSON)], "bench")
    report = BenchReport.from_dict(_fetch_json(device, results / BENCH_JSON, "bench"))
    progress(f"bench: {len(report.results)} files timed at batch 1" + (" (emulated)" if device.spec.emulated else ""))
    return report


def _select(device: Device, python: str, remote: PurePosixPath, results: PurePosixPath,
            progress: Progress, flags: tuple[str, ...]) -> Selection:
    deploy = results / "deploy"
    _run_cli(device, [python, *CLI, "select", str(remote / installer.ARTIFACTS_DIR), *flags, "--out", str(deploy)],
             "select", ok=(0, 1))
    selection = Selection.from_dict(_fetch_json(device, deploy / SELECTION_NAME, "select"))
    progress(f"select: {selection.verdict}")
    return selection


def _run_cli(device: Device, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> None:
    done = device.run(argv, timeout=3600)
    if done.returncode not in ok:
        raise TargetError(f"target {device.spec.text}: cllnn-bench {what} failed there (exit {done.returncode}): "
                          f"{done.tail()}")


def _fetch_json(device: Device, remote: PurePosixPath, what: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / remote.name
        device.get(remote, local, max_bytes=MAX_RESULT_BYTES)
        return parse_result(local.read_bytes(), remote.name, f"target {device.spec.text}: {what}'s {remote.name}")


def _json_object(raw: bytes, device: Device, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TargetError(f"target {device.spec.text}: {what} is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise TargetError(f"target {device.spec.text}: {what} is not a JSON object")
    return value


def _place(run: DeviceRun, manifest: Manifest) -> None:
    """Write the device's results into a directory beside ``devices/NAME``, read it back as the report
    will (``read_device``: every file and their agreement with each other and the run), rename it into place."""
    final = run.directory
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run.name}.partial-", dir=final.parent))
    try:
        write_json_atomic(staging / PROBE_JSON, run.facts.to_dict())
        run.verify.save_json(staging / VERIFY_JSON)
        run.bench.save_json(staging / BENCH_JSON)
        if run.selection is not None:
            run.selection.save_json(staging / SELECTION_NAME)
        write_json_atomic(staging / RUN_JSON, target_record(run.name, run.target, run.emulated, run.runtime,
                                                            run.formats))
        read_device(staging, manifest, name=run.name)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
