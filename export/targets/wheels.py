"""The device's wheels: which platform tags a device takes, which versions to pin, and the one
download of them, cached.

``pip download --platform ... --only-binary=:all:`` fetches wheels for a machine other than this
one. pip does not widen a ``manylinux_2_X`` tag to older glibc versions by itself (it does only for
``manylinux2014``), and measured: given only ``manylinux2014_aarch64`` it settles on ai-edge-litert
1.4, whose newest aarch64 wheel is ``manylinux_2_27``; so every tag from glibc 2.17 to
``GLIBC_CEILING`` is passed. pip evaluates environment markers against the Python running it, not
the ``--python-version`` given, so the requirements are evaluated here for the device (``device_markers``)
and the downloaded set is checked to be closed under its wheels' own dependencies (``closure_missing``).

Cache: ``$XDG_CACHE_HOME/cllnn-edge/wheels`` (default ``~/.cache``). ``files/`` holds wheels under
their own names (name, version, Python and platform tags), ``resolved/KEY.json`` what a set of
requirements resolved to for one platform and Python (KEY: their hash), so a second bundle asks pip
nothing and works offline (``project/HASH/`` holds cllnn-edge's own wheel, by its source's hash:
``export.targets.bundle``). pip downloads into ``.download-*``; a wheel moves into ``files/`` (a
rename) only after pip succeeded and the zip reads whole, so a cut download leaves nothing that
looks whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from export.errors import TargetError
from export.targets.device import cache_home
from runtime.atomic import write_json_atomic
from runtime.artifacts.manifest import sha256_file

GLIBC_FLOOR, GLIBC_CEILING = 17, 31  # manylinux_2_17 .. manylinux_2_31: Debian 11, Ubuntu 20.04, Pi OS 11 and newer
DOWNLOAD_TIMEOUT = 1800.0  # seconds for one pip download (about 60 MB of wheels)
ARM32 = ("armv7l", "armv6l", "armhf", "arm")
_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
            "Network is unreachable", "Name or service not known", "ProxyError", "ConnectTimeoutError",
            "No route to host", "Connection refused")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


@dataclass(frozen=True)
class DevicePlatform:
    """A device's operating system and CPU as wheels name them."""

    name: str  # as --platform takes it: linux-aarch64
    machine: str  # platform.machine() there: aarch64
    glibc_ceiling: int = GLIBC_CEILING  # the newest manylinux_2_X taken (``reaching``: a device's own glibc)

    @property
    def tags(self) -> tuple[str, ...]:
        """The platform tags pip may take for it, newest glibc first."""
        return (*(f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc_ceiling, GLIBC_FLOOR - 1, -1)),
                f"manylinux2014_{self.machine}")

    def reaching(self, glibc: str | None) -> DevicePlatform:
        """The platform with its tags reaching a known device's glibc (``"2.36"``), so a release whose only
        wheel needs more than ``manylinux_2_31`` can be had (tflite-runtime 2.14 on aarch64: 2_34)."""
        match = re.match(r"2\.(\d+)", glibc or "")
        minor = int(match[1]) if match else GLIBC_CEILING
        return replace(self, glibc_ceiling=max(GLIBC_CEILING, min(minor, 99)))


PLATFORMS = {p.name: p for p in (DevicePlatform("linux-aarch64", "aarch64"), DevicePlatform("linux-x86_64", "x86_64"))}


def parse_platform(text: str) -> DevicePlatform:
    """``--platform``: one of ``PLATFORMS``; a 32-bit ARM OS is refused with what to do instead."""
    name = text.strip().lower()
    if name in PLATFORMS:
        return PLATFORMS[name]
    if name.removeprefix("linux-") in ARM32:
        raise TargetError(f"--platform {text}: a 32-bit ARM OS (armv7l, e.g. 32-bit Raspberry Pi OS) has no "
                          f"ai-edge-litert wheels; install a 64-bit OS (Raspberry Pi OS 64-bit) and bundle "
                          f"for --platform linux-aarch64")
    raise TargetError(f"--platform {text!r}: expected one of {', '.join(PLATFORMS)}")


def parse_python(text: str) -> str:
    """``--python X.Y``: a CPython the project supports (3.10 and newer)."""
    match = re.fullmatch(r"3\.(\d{1,2})", text.strip())
    if match is None or int(match[1]) < 10:
        raise TargetError(f"--python {text!r}: expected X.Y of a CPython >= 3.10, e.g. 3.11")
    return text.strip()


def device_markers(platform: DevicePlatform, python: str) -> dict[str, str]:
    """The environment markers on the device (PEP 508), to evaluate requirements for it."""
    return {"python_version": python, "python_full_version": f"{python}.0", "platform_machine": platform.machine,
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def applies(requirement: Requirement, markers: dict[str, str]) -> bool:
    """Whether a requirement (a base one: no extra) holds on the device."""
    return requirement.marker is None or requirement.marker.evaluate(markers)


def wheel_requirements(wheel: Path, markers: dict[str, str]) -> list[Requirement]:
    """The base requirements a wheel's METADATA names that hold on the device (extras left out)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = archive.read(name).decode("utf-8")
    found = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [req for req in found if applies(req, markers)]


def closure_missing(wheels: Sequence[Path], markers: dict[str, str]) -> list[str]:
    """Distributions some wheel needs on the device that none of ``wheels`` provides (pip evaluated
    the markers for the host)."""
    have = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    needed = {canonicalize_name(r.name): str(r) for w in wheels for r in wheel_requirements(w, markers)}
    return sorted(req.split(";")[0] for name, req in needed.items() if name not in have)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/cllnn-edge/wheels`` (default ``~/.cache/cllnn-edge/wheels``)."""
    return cache_home() / "wheels"


@dataclass(frozen=True)
class Fetched:
    """The wheels of one resolution, in the cache, and how many pip downloaded now."""

    wheels: tuple[Path, ...]
    downloaded: int


def fetch(requirements: Sequence[str], platform: DevicePlatform, python: str, *,
          cache: Path | None = None, progress: Callable[[str], None] = lambda line: None) -> Fetched:
    """The wheels ``requirements`` need on the device, from the cache when it has them all, else
    from the package index through pip (then cached)."""
    cache = cache_root() if cache is None else cache
    key = hashlib.sha256(json.dumps([platform.tags, python, "cp", sorted(requirements)]).encode()).hexdigest()[:24]
    record = cache / "resolved" / f"{key}.json"
    cached = _cached(record, cache)
    if cached is not None:
        progress(f"wheels: {len(cached)} from the cache ({cache})")
        return Fetched(cached, 0)
    (cache / "files").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        progress(f"wheels: pip download for {platform.name}, CPython {python}: {', '.join(requirements)}")
        _download(list(requirements), platform, python, staging)
        markers = device_markers(platform, python)
        for _ in range(3):  # what pip left out because it read a marker for this host's Python
            missing = closure_missing(sorted(staging.glob("*.whl")), markers)
            if not missing:
                break
            _download(missing, platform, python, staging)
        wheels = tuple(_keep(path, cache / "files") for path in sorted(staging.glob("*.whl")))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json_atomic(record, {"requirements": sorted(requirements), "platform": platform.name, "python": python,
                               "wheels": [{"file": w.name, "sha256": sha256_file(w), "size": w.stat().st_size}
                                          for w in wheels]})
    return Fetched(wheels, len(wheels))


def _cached(record: Path, cache: Path) -> tuple[Path, ...] | None:
    """The wheels a resolution record lists, if every one is in the cache and unchanged."""
    try:
        listed = json.loads(record.read_text())["wheels"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paths = []
    for item in listed:
        path = cache / "files" / item["file"]
        if not path.is_file() or path.stat().st_size != item["size"] or sha256_file(path) != item["sha256"]:
            path.unlink(missing_ok=True)  # a damaged copy is fetched again
            return None
        paths.append(path)
    return tuple(paths)


def _keep(path: Path, files: Path) -> Path:
    """Move a downloaded wheel into the cache, once its zip reads whole."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise TargetError(f"pip downloaded {path.name}, which is not a whole zip ({exc}); run the command again") from exc
    if bad is not None:
        raise TargetError(f"pip downloaded {path.name} with a damaged member {bad}; run the command again")
    final = files / path.name
    os.replace(path, final)
    return final


def _download(requirements: list[str], platform: DevicePlatform, python: str, dest: Path) -> None:
    argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python, *(f"--platform={tag}" for tag in platform.tags), "--retries", "2",
            "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest), *requirements]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise TargetError(f"pip download took longer than {DOWNLOAD_TIMEOUT:.0f} s; stopped (a slow or cut "
                          f"connection?); run the command again") from exc
    if done.returncode != 0:
        raise _download_error(done.stderr + done.stdout, platform, python)


def _download_error(output: str, platform: DevicePlatform, python: str) -> TargetError:
    """pip's failure as the user's problem: no network, or no wheel of a pinned version there."""
    lines = output.strip().splitlines()
    tail = " | ".join(line.strip() for line in ([text for text in lines if text.startswith("ERROR:")] or lines)[-3:])
    if any(marker in output for marker in _NETWORK):
        return TargetError(f"cannot reach the package index to download wheels for {platform.name} / CPython "
                           f"{python} (no network?): connect once, the wheels are then cached in {cache_root()}; "
                           f"pip: {tail}")
    match = _NO_MATCH.search(output)
    if match is not None:
        wanted = Requirement(match[1])
        return TargetError(f"no wheel of {wanted.name} {str(wanted.specifier).lstrip('=') or '(any version)'} for "
                           f"{platform.name} / CPython {python} on the package index (versions are pinned to those the "
                           f"run's files were verified with); choose another --python or --platform; pip: {tail}")
    return TargetError(f"pip download for {platform.name} / CPython {python} failed: {tail}")
