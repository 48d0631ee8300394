"""``emulated:CPU``: an arm64 Python under qemu-user on this machine, for a user without a board.

The arm64 root is made once by Debian's mmdebstrap (``--variant=extract --mode=chrootless``: the
packages' files, no maintainer scripts, nothing run as arm64, no root needed) and cached under ``~/.cache/cllnn-edge/emulated/`` (or
``$XDG_CACHE_HOME``), named by a hash of what it was made from (``RootRecipe``). It is built in a
directory beside its final name and renamed into place only once its Python has run under qemu, so
a killed build leaves nothing that looks complete.

Every command runs as ``qemu-aarch64-static -cpu CPU -L ROOT PROGRAM ...`` in a private mount
namespace (``unshare --user --map-root-user --mount``: as root, or as a user where the kernel lets
users make namespaces) where:

- ``/proc/cpuinfo`` is an ARM-looking file (``fake_cpuinfo``): under qemu 7.2 the cpuinfo library
  inside LiteRT and ONNX Runtime dereferences NULL on the host's x86 file and the process dies with
  SIGSEGV. The file names the CPU's part (so ``runtime.machine`` says "Arm Cortex-A76") but carries no
  ``Features`` line: the features are qemu's ``-cpu`` (the auxiliary vector's HWCAP), not a file's.
- a binfmt_misc instance of the namespace's own (Linux >= 6.7) hands arm64 programs to qemu, so a
  command can start arm64 processes of its own (``python -m venv`` runs ensurepip so); the host's
  binfmt_misc is not touched. Older kernels: a command's own children cannot be arm64 programs.

Paths the root does not hold resolve on the host (qemu's ``-L``), so the guest reads the device's
working directory and the repository's files where they are. Timings from here say nothing about a
board (``TargetSpec.emulated``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from export.errors import TargetError
from export.targets.device import DEFAULT_TIMEOUT, Completed, cache_home, run_process
from export.targets.local import LocalDevice
from export.targets.spec import EMULATED, TargetSpec
from runtime.atomic import json_text, write_bytes_atomic

QEMU, MMDEBSTRAP, UNSHARE = "qemu-aarch64-static", "mmdebstrap", "unshare"
INSTALL = ("run scripts/ensure-qemu, or on Debian / Ubuntu: sudo apt-get install qemu-user-static mmdebstrap")
VARIANT, MODE = "extract", "chrootless"  # mmdebstrap's: the packages' files only, as any user
BUILD_TIMEOUT = 1800.0  # seconds mmdebstrap may take (it downloads ~25 MB of packages)
# MIDR_EL1 as qemu 7.2 reports it for each -cpu (read with `mrs` under qemu-aarch64-static).
MIDR = {"cortex-a72": 0x410FD083, "cortex-a76": 0x414FD0B1, "max": 0x000F0510}
# binfmt_misc's rule for an aarch64 ELF executable (the header's class, data, version, type, machine).
_ELF_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_ELF_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
# Run in the new namespaces: $1 the ARM cpuinfo, $2 a directory to mount binfmt_misc on, $3 its rule.
_LAUNCH = """set -e
mount --bind "$1" /proc/cpuinfo
if mount -t binfmt_misc cllnn-edge "$2" 2>/dev/null; then printf %s "$3" > "$2/register"; fi
shift 3
exec "$@"
"""
_BIN_DIRS = ("usr/local/bin", "usr/bin", "usr/sbin", "bin", "sbin")


@dataclass(frozen=True)
class RootRecipe:
    """What an arm64 root is made from; its ``key`` names the cached root, so a change makes a new one.

    The packages: the suite's Python (``python_version``) with its standard library, ``python3``
    pointing at it, ``venv`` with ensurepip's pip and setuptools wheels (a bundle installs with
    ``pip install --no-index`` into a venv), and the C++ runtime the LiteRT and ONNX Runtime wheels
    link against (``extra``)."""

    suite: str = "bookworm"
    python_version: str = "3.11"  # bookworm's; wheels for the device are cp311
    extra: tuple[str, ...] = ("libstdc++6",)
    architecture: str = "arm64"

    @property
    def packages(self) -> tuple[str, ...]:
        version = self.python_version
        return ("python3-minimal", f"python{version}-minimal", f"libpython{version}-stdlib",
                f"python{version}-venv", *self.extra)

    @property
    def python(self) -> str:
        """The root's Python, as the device names it (``Device.python``)."""
        return f"python{self.python_version}"

    def record(self) -> dict[str, object]:
        return {"suite": self.suite, "architecture": self.architecture, "variant": VARIANT,
                "mode": MODE, "packages": sorted(self.packages)}

    @property
    def key(self) -> str:
        return hashlib.sha256(json_text(self.record()).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"root-{self.suite}-{self.architecture}-{self.key}"


RECIPE_FILE = "cllnn-edge-root.json"  # inside a finished root: its recipe


def fake_cpuinfo(cpu: str, cores: int) -> str:
    """/proc/cpuinfo as an arm64 kernel writes it for ``cpu``'s MIDR, one block per core, without the
    ``Features`` line (the features are qemu's: read from HWCAP)."""
    midr = MIDR[cpu]
    block = (f"CPU implementer\t: 0x{midr >> 24:02x}\nCPU architecture: 8\nCPU variant\t: 0x{(midr >> 20) & 0xF:x}\n"
             f"CPU part\t: 0x{(midr >> 4) & 0xFFF:03x}\nCPU revision\t: {midr & 0xF}\n")
    return "\n".join(f"processor\t: {n}\n{block}" for n in range(max(1, cores)))


def ensure_root(recipe: RootRecipe, cache: Path, *, spec: TargetSpec) -> Path:
    """The cached root made from ``recipe``, built now when absent (about a minute; once)."""
    final = cache / recipe.name
    if (final / RECIPE_FILE).is_file():
        return final
    mmdebstrap = shutil.which(MMDEBSTRAP)
    if mmdebstrap is None:
        raise TargetError(f"target {spec.text}: the arm64 root is not made yet and {MMDEBSTRAP} is missing; {INSTALL}")
    cache.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(cache, recipe)
    partial = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.partial-{os.getpid()}-", dir=cache))
    try:
        partial.chmod(0o755)  # mkdtemp's 0700 would stay the root's mode
        done = run_process([mmdebstrap, "--quiet", f"--mode={MODE}", f"--variant={VARIANT}",
                            f"--architectures={recipe.architecture}",
                            f"--include={','.join(recipe.packages)}", recipe.suite, str(partial)],
                           spec=spec, timeout=BUILD_TIMEOUT)
        if done.returncode != 0:
            raise TargetError(f"target {spec.text}: {MMDEBSTRAP} could not make the arm64 root (exit "
                              f"{done.returncode}): {done.tail()}; it needs Debian's package mirror")
        _check_python(partial, recipe, spec)
        write_bytes_atomic(partial / RECIPE_FILE, json_text(recipe.record()).encode())
        try:
            os.rename(partial, final)
        except OSError as exc:  # another process finished the same root first: use its
            if not (final / RECIPE_FILE).is_file():
                raise TargetError(f"target {spec.text}: {final} is in the way of the arm64 root and is not "
                                  f"one ({exc.strerror or exc}): remove it") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _check_python(root: Path, recipe: RootRecipe, spec: TargetSpec) -> None:
    """The root is complete only once its Python runs under qemu."""
    qemu = _tool(QEMU, spec)
    done = run_process([qemu, "-L", str(root), str(root / "usr" / "bin" / recipe.python), "-c",
                        "import platform, ssl, ctypes, venv; print(platform.machine())"], spec=spec, timeout=300)
    if done.returncode != 0 or done.stdout.strip() != b"aarch64":
        raise TargetError(f"target {spec.text}: the arm64 root's Python does not run under {QEMU} "
                          f"(exit {done.returncode}): {done.tail()}")


def _remove_stale_partials(cache: Path, recipe: RootRecipe) -> None:
    """Builds killed part-way left ``.NAME.partial-PID-*``: removed once their process is gone."""
    for partial in cache.glob(f".{recipe.name}.partial-*"):
        pid = partial.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tool(name: str, spec: TargetSpec) -> str:
    path = shutil.which(name)
    if path is None:
        package = "util-linux" if name == UNSHARE else "qemu-user-static"
        raise TargetError(f"target {spec.text} needs {name} (Debian's {package}), not found on PATH; {INSTALL}")
    return path


class EmulatedDevice(LocalDevice):
    """``emulated:CPU``: a working directory on this machine (``root``, by default in the cache) whose
    commands run as arm64 programs under qemu-user with ``-cpu CPU``. Files move as on ``local``.

    ``argv[0]`` of a command is an arm64 ELF program: a bare name is looked up in the root's
    ``/usr/bin`` and the like (``python3``), a relative path is in the working directory (a venv's
    ``bin/python``), an absolute path is the root's where it holds it. A console script is run as
    ``python -m MODULE``. The environment is the device's own (PATH, HOME = the working directory,
    LANG), not the host's, plus ``env``: the host's PYTHONPATH or VIRTUAL_ENV mean nothing there.
    """

    def __init__(self, spec: TargetSpec, root: Path | None = None, *, cache: Path | None = None,
                 recipe: RootRecipe = RootRecipe()) -> None:
        if spec.kind != EMULATED or spec.cpu not in MIDR:
            raise TargetError(f"target {spec.text}: not an emulated CPU ({', '.join(MIDR)})")
        self.cache = (cache or cache_home()) / "emulated"
        self.qemu, self.unshare = _tool(QEMU, spec), _tool(UNSHARE, spec)
        super().__init__(spec, root or self.cache / "devices" / spec.cpu, python=recipe.python)
        self.sysroot = ensure_root(recipe, self.cache, spec=spec)
        self.cpuinfo = self._write_cpuinfo()
        self.binfmt = self.cache / "binfmt_misc"  # a mount point, empty on the host
        self.binfmt.mkdir(exist_ok=True)
        self._check_namespaces()

    @property
    def cpu(self) -> str:
        return str(self.spec.cpu)

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
            env: dict[str, str] | None = None) -> Completed:
        if not argv:
            raise TargetError(f"target {self.spec.text}: an empty command")
        program = [self.qemu, "-cpu", self.cpu, "-L", str(self.sysroot), self._program(argv[0]), *argv[1:]]
        return run_process(self._launcher(program), spec=self.spec, timeout=timeout, cwd=self.root,
                           env={**self._environment(), **(env or {})})

    def _launcher(self, argv: Sequence[str]) -> list[str]:
        rule = f":cllnn-edge-aarch64:M::{_ELF_MAGIC}:{_ELF_MASK}:{self.qemu}:F"
        return [self.unshare, "--user", "--map-root-user", "--mount", "sh", "-c", _LAUNCH, "cllnn-edge-emulated",
                str(self.cpuinfo), str(self.binfmt), rule, *argv]

    def _environment(self) -> dict[str, str]:
        """The device's environment; QEMU_CPU and QEMU_LD_PREFIX reach the arm64 processes a command
        starts (through binfmt_misc they get no qemu flags)."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8",
                "QEMU_CPU": self.cpu, "QEMU_LD_PREFIX": str(self.sysroot)}

    def _program(self, name: str) -> str:
        path = PurePosixPath(name)
        if len(path.parts) == 1 and not path.is_absolute():
            for folder in _BIN_DIRS:
                if (self.sysroot / folder / name).is_file():
                    return str(self.sysroot / folder / name)
            raise TargetError(f"target {self.spec.text}: no program {name!r} in the arm64 root {self.sysroot}")
        if path.is_absolute():
            inside = self.sysroot / path.relative_to("/")
            return str(inside) if inside.exists() else name
        return str(self.root / path)

    def _write_cpuinfo(self) -> Path:
        text = fake_cpuinfo(self.cpu, os.cpu_count() or 1)
        path = self.cache / "cpuinfo" / f"{self.cpu}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.txt"
        if not path.is_file():
            write_bytes_atomic(path, text.encode())
        return path

    def _check_namespaces(self) -> None:
        """Before any command: can this user make the private mount namespace the ARM cpuinfo needs?"""
        done = run_process(self._launcher(["true"]), spec=self.spec, timeout=60, env=self._environment())
        if done.returncode != 0:
            raise TargetError(
                f"target {self.spec.text}: cannot make the private mount namespace that shows qemu an ARM "
                f"/proc/cpuinfo ({UNSHARE} --user --map-root-user --mount: {done.tail()}); run as root, or let "
                f"users make user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also "
                f"kernel.apparmor_restrict_unprivileged_userns=0)")



def missing_tools() -> list[str]:
    """The programs the emulation needs that are not on PATH (empty: it can run here)."""
    return [name for name in (QEMU, MMDEBSTRAP, UNSHARE) if shutil.which(name) is None]
