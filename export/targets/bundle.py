"""``cllnn-export target bundle``: everything a device needs to check and run a run's files, offline.

A bundle directory holds::

    wheels/      cllnn-edge's own wheel and every dependency's, for the device's platform and Python
    artifacts/   the run's files, manifest.json, manifest.sig (when signed), the check set, the probes
    install.py   the installer the device runs (``export.targets.install``: standard library only)
    bundle.json  every file above with its SHA-256 and size, the platform, the Python, the pins

The device install is the distribution's base dependencies (numpy, ai-edge-litert, onnxruntime,
fastjsonschema: what ``runtime`` needs), pinned to the versions the run's manifest says its files
were verified with, else to this host's; with ``manifest.sig`` the ``signing`` extra comes too, so
the device can check it. The project's own wheel is built with ``pip wheel --no-deps
--no-build-isolation`` from a clean copy of the source: pip is already here (``build`` would be one
more tool), no build isolation means no setuptools fetched from the index (a bundle needs no network
once its wheels are cached), the copy keeps stale ``build/`` output out of the wheel, and
``SOURCE_DATE_EPOCH`` makes the same source give the same bytes (so the device's environment,
named by the wheels' hashes, is reused).

The bundle is made in a temporary directory beside ``--out``, ``bundle.json`` written last, and
renamed into place: a directory without a complete ``bundle.json`` is never taken for a bundle.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from export.errors import TargetError
from export.layout import RunLayout
from export.targets import install as installer
from export.targets.wheels import DevicePlatform, cache_root, device_markers, fetch, wheel_requirements
from runtime.artifacts.manifest import MANIFEST_NAME, TFLM, open_contained, sha256_bytes, sha256_file
from runtime.artifacts.opened import Artifacts
from runtime.artifacts.signing import SIGNATURE_NAME
from runtime.atomic import write_json_atomic

PROJECT = "cllnn-edge"
SIGNING_EXTRA, TFLM_EXTRA = "signing", "tflm"  # pyproject.toml's optional-dependencies
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip holds: the same source, the same wheel
_SOURCE = ("pyproject.toml", "README.md", "cllnn_edge", "export", "runtime")  # what the wheel is built from
_GLIBC_OF = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class BundleResult:
    """A bundle made: where, its size, what pip downloaded for it (0: all from the cache), how long."""

    directory: Path
    files: int
    bytes: int
    downloaded: int
    seconds: float
    pins: dict[str, str]


def find_artifacts(run_dir: Path) -> Artifacts:
    """The artefacts of ``run_dir`` (a run directory, or an artefacts directory itself), opened."""
    for candidate in (RunLayout(run_dir).artifacts, run_dir):
        if (candidate / MANIFEST_NAME).is_file():
            artifacts = Artifacts.open(candidate)
            if not artifacts.manifest.artifacts:
                raise TargetError(f"{candidate / MANIFEST_NAME} lists no artefacts; nothing to bundle")
            return artifacts
    raise TargetError(f"{run_dir} holds no artefacts: neither {RunLayout(run_dir).manifest} nor "
                      f"{run_dir / MANIFEST_NAME} exists; run 'cllnn-export run' (or 'convert') first")


def project_source() -> Path:
    """The source tree this toolkit runs from: its own wheel is built from it."""
    root = Path(__file__).resolve().parents[2]  # export/targets/bundle.py -> the repository
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or f'name = "{PROJECT}"' not in pyproject.read_text(encoding="utf-8"):
        raise TargetError(f"cannot find {PROJECT}'s source tree at {root} (no "
                          f"pyproject.toml there): a bundle builds {PROJECT}'s wheel from its source; install "
                          f"{PROJECT} from a clone (pip install -e .)")
    return root


def project_wheel(dest: Path, cache: Path, source: Path | None = None) -> Path:
    """``cllnn-edge``'s wheel, copied into ``dest``: built once per source content (kept in
    ``cache/project/HASH/``, renamed there when whole), so a second bundle builds nothing either."""
    source = project_source() if source is None else source
    files = sorted(p for name in _SOURCE for p in ([source / name] if (source / name).is_file() else
                   (source / name).rglob("*")) if p.is_file() and not _ignored(p))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + sha256_file(path).encode())
    built = cache / "project" / digest.hexdigest()[:24]
    if not any(built.glob("cllnn_edge-*.whl")):
        built.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=built.parent))
        try:
            _build_wheel(source, files, staging)
            shutil.rmtree(built, ignore_errors=True)
            os.replace(staging, built)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    wheel = next(built.glob("cllnn_edge-*.whl"))
    shutil.copyfile(wheel, dest / wheel.name)
    return dest / wheel.name


def _ignored(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix == ".pyc" or any(p.endswith(".egg-info") for p in path.parts)


def _build_wheel(source: Path, files: list[Path], dest: Path) -> None:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of ``files`` (the wheel lands in ``dest``)."""
    with tempfile.TemporaryDirectory(prefix="cllnn-wheel-") as scratch:
        for path in files:
            copy = Path(scratch) / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "--disable-pip-version-check", "--quiet", "--wheel-dir", str(dest), scratch]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
                              env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH})
    if done.returncode != 0 or not any(dest.glob("cllnn_edge-*.whl")):
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise TargetError(f"building {PROJECT}'s wheel failed (pip wheel --no-build-isolation needs setuptools "
                          f"in this environment): {tail}")


def pinned(wheel: Path, versions: dict[str, str], markers: dict[str, str], extras: tuple[str, ...] = (),
           overrides: Sequence[str] = (), flag: str = "--pin") -> tuple[list[str], dict[str, str]]:
    """The project's requirements on the device, each pinned: as ``overrides`` say (``--pin``: a
    requirement such as ``onnxruntime==1.24.1`` or ``tflite-runtime==2.14``, replacing or adding one),
    else to the version the run's manifest recorded (``versions``), else to this host's installed one,
    else as the project states it. Returns the requirement strings and ``{name: "VERSION (from ...)"}``;
    ``flag`` names the overrides' origin in errors and pins (``--pin``, ``--runtime``)."""
    recorded = {canonicalize_name(k): v for k, v in versions.items()}
    found: dict[str, Requirement] = {}
    for extra in ("", *extras):
        for req in wheel_requirements(wheel, {**markers, "extra": extra}):
            found.setdefault(canonicalize_name(req.name), req)
    found.setdefault("pip", Requirement("pip"))  # the device installs with the bundle's own pip
    requirements, pins = [], {}
    for override in (_requirement(text, flag) for text in overrides):
        needed = found.pop(canonicalize_name(override.name), None)
        exact = [spec.version for spec in override.specifier if spec.operator == "=="]
        if needed is not None and exact and not needed.specifier.contains(exact[0], prereleases=True):
            raise TargetError(f"{flag} {override}: {PROJECT} needs {needed.name}{needed.specifier}")
        requirements.append(str(override))
        pins[override.name] = f"{str(override.specifier) or 'any'} (from {flag})"
    for name, req in sorted(found.items()):
        version, origin = recorded.get(name), "manifest"
        if version is None:
            version, origin = _installed(req.name), "host"
        if version is not None and not req.specifier.contains(version, prereleases=True):
            if origin == "manifest":
                raise TargetError(f"the run's files were verified with {req.name} {version}, but {PROJECT} needs "
                                  f"{req.name}{req.specifier}; export the files again with this {PROJECT}, or "
                                  f"--pin {req.name}==VERSION")
            version = None
        requirements.append(f"{req.name}=={version}" if version else f"{req.name}{req.specifier}")
        pins[req.name] = f"{version} (from {origin})" if version else f"{req.specifier or 'any'} (not pinned)"
    return sorted(requirements), dict(sorted(pins.items()))


def _requirement(text: str, flag: str) -> Requirement:
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise TargetError(f"{flag} {text!r}: expected NAME==VERSION (a requirement as pip takes it): {exc}") from exc
    if requirement.marker is not None or requirement.url:
        raise TargetError(f"{flag} {text!r}: a name and version only, no marker or URL")
    return requirement


def extras_for(artifacts: Artifacts) -> tuple[str, ...]:
    """The project's extras the device needs for these files: ``signing`` to check ``manifest.sig``,
    ``tflm`` to run a microcontroller file (its wheels are x86-64 only: its marker leaves it out elsewhere)."""
    extras = [SIGNING_EXTRA] if artifacts.signature is not None else []
    if any(entry.runtime == TFLM for entry in artifacts.manifest.artifacts):
        extras.append(TFLM_EXTRA)
    return tuple(extras)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def glibc_needed(wheels: list[Path]) -> str:
    """The glibc every wheel runs on: per wheel its oldest manylinux tag, the newest of those."""
    needed = (2, 17)
    for wheel in wheels:
        floors = [_glibc(tag.platform) for tag in parse_wheel_filename(wheel.name)[3]]
        floors = [f for f in floors if f is not None]
        if floors:
            needed = max(needed, min(floors))
    return f"{needed[0]}.{needed[1]}"


def _glibc(platform_tag: str) -> tuple[int, int] | None:
    prefix = platform_tag.split("_")[0]
    if prefix in _GLIBC_OF:
        return _GLIBC_OF[prefix]
    parts = platform_tag.split("_")
    if prefix == "manylinux" and len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def make_bundle(run_dir: Path, platform: DevicePlatform, python: str, out: Path, *, pins: Sequence[str] = (),
                cache: Path | None = None, progress: Callable[[str], None] = lambda line: None,
                flag: str = "--pin") -> BundleResult:
    """Write the bundle of ``run_dir``'s artefacts for ``platform`` / CPython ``python`` to ``out``;
    ``pins`` (``--pin``, or ``flag``'s) replace or add requirements (``pinned``)."""
    started = time.perf_counter()
    artifacts = find_artifacts(Path(run_dir))
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        wheels_dir = staging / installer.WHEELS_DIR
        wheels_dir.mkdir()
        progress(f"{PROJECT}'s wheel: from {project_source()}")
        project = project_wheel(wheels_dir, cache_root() if cache is None else cache)
        extras = extras_for(artifacts)
        requirements, pinned_to = pinned(project, artifacts.manifest.metadata.versions or {},
                                    device_markers(platform, python), extras, pins, flag)
        fetched = fetch(requirements, platform, python, cache=cache, progress=progress)
        for wheel in fetched.wheels:
            shutil.copyfile(wheel, wheels_dir / wheel.name)
        _copy_artifacts(artifacts, staging / installer.ARTIFACTS_DIR)
        shutil.copyfile(installer.__file__, staging / installer.INSTALLER)
        all_wheels = sorted(wheels_dir.iterdir())
        files = _write_bundle_json(staging, platform, python, pinned_to, glibc_needed(all_wheels),
                                   [f"{PROJECT}[{','.join(extras)}]" if extras else PROJECT])
        _place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BundleResult(out, len(files) + 1, sum(size for size in files.values()) + (out / installer.BUNDLE_JSON)
                        .stat().st_size, fetched.downloaded, time.perf_counter() - started, pinned_to)


def _check_out(out: Path) -> None:
    """``--out`` is new, empty, or a bundle made before (replaced whole): never a directory of the user's."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / installer.BUNDLE_JSON).is_file())):
        raise TargetError(f"--out {out} exists and is not a bundle (no {installer.BUNDLE_JSON}); "
                          f"choose a new directory or remove it")


def _copy_artifacts(artifacts: Artifacts, dest: Path) -> None:
    """Every file the manifest vouches for, checked against its SHA-256 as it is copied, then the
    manifest's own bytes as read and its signature."""
    for name, sha256 in artifacts.manifest.listed_files():
        with open_contained(artifacts.directory, name) as handle:
            data = handle.read()
        if sha256_bytes(data) != sha256:
            raise TargetError(f"{artifacts.directory / name} does not match its manifest's SHA-256; "
                              f"re-run cllnn-export convert before bundling")
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    assert artifacts.raw is not None  # opened from a directory: the bytes read
    (dest / MANIFEST_NAME).write_bytes(artifacts.raw)
    if artifacts.signature is not None:
        (dest / SIGNATURE_NAME).write_bytes(artifacts.signature)


def _write_bundle_json(staging: Path, platform: DevicePlatform, python: str, pins: dict[str, str],
                       glibc: str, requirements: list[str]) -> dict[str, int]:
    files = {path.relative_to(staging).as_posix(): path for path in sorted(staging.rglob("*")) if path.is_file()}
    document = {
        "format": installer.BUNDLE_FORMAT, "platform": platform.name, "machine": platform.machine,
        "python": python, "implementation": "cp", "glibc": glibc, "pins": pins, "requirements": requirements,
        "platform_tags": list(platform.tags),
        "files": [{"path": name, "sha256": sha256_file(path), "size": path.stat().st_size}
                  for name, path in files.items()],
    }
    write_json_atomic(staging / installer.BUNDLE_JSON, document)
    return {name: path.stat().st_size for name, path in files.items()}


def _place(staging: Path, out: Path) -> None:
    """Rename the finished bundle to ``out``; a bundle there before is moved aside first, then removed."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "bundle")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["BundleResult", "cache_root", "find_artifacts", "make_bundle", "pinned", "project_wheel"]
