"""emulated:CPU: an arm64 Python under the real qemu-user, in a root made by the real mmdebstrap. The
CPU class runtime.machine reads there, and the device runtimes (the real aarch64 wheels of the host's
versions) giving the same verify verdicts as the host on the same files.

Without qemu-user-static / mmdebstrap (scripts/ensure-qemu installs them where it can) the tests that
need them skip, and fail where CI is set. The root and the wheels are cached (XDG_CACHE_HOME): the
first run makes them (about a minute each), later runs reuse them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

import pytest

from export.errors import TargetError, exit_code_of
from export.targets.device import cache_home
from export.targets.emulated import (MIDR, EmulatedDevice, RootRecipe, ensure_root,
                                     fake_cpuinfo, missing_tools)
from export.targets.spec import EMULATED_CPUS, parse_target
from runtime.checks.verify import verify
from runtime.machine import CpuInfo, parse_cpuinfo

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "run_a8fda90" / "artifacts"
FORMATS = ("tflite-fp32", "tflite-dynamic", "tflite-int8", "onnx-int8")  # float, dynamic, int8 in both runtimes
RUNTIMES = ("ai-edge-litert", "onnxruntime", "numpy", "fastjsonschema")  # the device's, at the host's versions
# pip takes exactly the platform tags it is given: the wheels' own (LiteRT manylinux_2_27, ONNX Runtime
# manylinux_2_28, protobuf manylinux2014), all within bookworm's glibc 2.36.
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
CLASSES = {"cortex-a72": ("Arm Cortex-A72", ("asimd",), "arm64 NEON (no dotprod)"),
           "cortex-a76": ("Arm Cortex-A76", ("asimd", "asimddp"), "arm64 dotprod"),
           "max": ("ARM implementer 0x00 part 0x051", ("asimd", "asimddp", "i8mm", "sve"), "arm64 dotprod+i8mm")}


def _needs_qemu() -> None:
    missing = missing_tools()
    if missing:
        reason = f"{', '.join(missing)} not installed: scripts/ensure-qemu installs them (root with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; `make test` runs it in CI")
        pytest.skip(reason)


def test_the_fake_cpuinfo_names_the_part_and_leaves_the_features_to_hwcap() -> None:
    """What LiteRT's and ONNX Runtime's cpuinfo library reads instead of the host's x86 file (on which they
    segfault under qemu 7.2): the CPU's MIDR as qemu reports it, one block per core, no Features line."""
    text = fake_cpuinfo("cortex-a76", 3)
    assert text.count("processor\t:") == 3 and "Features" not in text
    assert "CPU part\t: 0xd0b" in text and "CPU variant\t: 0x4" in text and "CPU revision\t: 1" in text
    for cpu, (model, _, _) in CLASSES.items():
        assert parse_cpuinfo(fake_cpuinfo(cpu, 2), "aarch64") == CpuInfo(model=model, arch="arm64", isa=None)
    assert set(MIDR) == set(CLASSES) == set(EMULATED_CPUS)


def test_the_cache_follows_xdg_and_a_changed_recipe_is_another_root(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_home() == tmp_path / "cllnn-edge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_home() == Path.home() / ".cache" / "cllnn-edge"
    default = RootRecipe()
    assert default.name.startswith("root-bookworm-arm64-") and default.python == "python3.11"
    assert "python3.11-venv" in default.packages and "libstdc++6" in default.packages
    assert RootRecipe(extra=("libstdc++6", "libgomp1")).key != default.key
    assert RootRecipe(suite="trixie", python_version="3.13").key != default.key


def test_missing_qemu_is_an_error_saying_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu, unshare or mmdebstrap on it
    with pytest.raises(TargetError) as caught:
        EmulatedDevice(parse_target("emulated:cortex-a76"), tmp_path / "device", cache=tmp_path)
    message = str(caught.value)
    assert message.startswith("target emulated:cortex-a76 needs qemu-aarch64-static (Debian's qemu-user-static)")
    assert "scripts/ensure-qemu" in message and exit_code_of(caught.value) == 2
    assert not (tmp_path / "device").exists()
    with pytest.raises(TargetError, match="not an emulated CPU"):
        EmulatedDevice(parse_target("local"), tmp_path / "device", cache=tmp_path)


@pytest.mark.slow
def test_a_failed_build_leaves_nothing_that_looks_like_a_root(tmp_path: Path) -> None:
    """mmdebstrap refusing the recipe (a package the suite lacks) is a TargetError naming it; nothing is
    left under the root's name, and a build killed earlier (its process gone) is cleared away."""
    _needs_qemu()
    recipe = RootRecipe(extra=("libstdc++6", "no-such-package-cllnn"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f".{recipe.name}.partial-{gone.pid}-x"
    (killed / "usr" / "bin").mkdir(parents=True)  # what a build killed part-way leaves
    with pytest.raises(TargetError, match="could not make the arm64 root") as caught:
        ensure_root(recipe, tmp_path, spec=parse_target("emulated:max"))
    assert "no-such-package-cllnn" in str(caught.value)
    assert [path.name for path in tmp_path.iterdir()] == []


@pytest.fixture(scope="session")
def aarch64_site() -> Path:
    """The device runtimes at the host's versions, installed for aarch64 / CPython 3.11 by the host's pip
    (``pip install --target --platform ...``: the wheels' files as pip lays them out), cached by the
    versions and platforms, made beside the final name and renamed in when pip succeeded."""
    _needs_qemu()
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in RUNTIMES]
    key = hashlib.sha256(json.dumps([pins, PLATFORMS, RootRecipe().python_version]).encode()).hexdigest()[:16]
    final = cache_home() / "emulated" / f"site-cp311-aarch64-{key}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        platforms = [flag for tag in PLATFORMS for flag in ("--platform", tag)]
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-compile", "--target", str(partial), *platforms, "--python-version",
                               RootRecipe().python_version, "--only-binary=:all:", *pins],
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        try:
            os.rename(partial, final)
        except OSError:  # another test process laid the same wheels out first
            assert final.is_dir()
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def devices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EmulatedDevice]:
    """One device per emulated CPU, each in a working directory of its own (the root is shared, cached)."""
    _needs_qemu()
    work = tmp_path_factory.mktemp("emulated")
    return {cpu: EmulatedDevice(parse_target(f"emulated:{cpu}"), work / cpu) for cpu in CLASSES}


@pytest.mark.slow
@pytest.mark.parametrize("cpu", list(CLASSES))
def test_runtime_machine_reads_the_emulated_cpus_class(devices: dict[str, EmulatedDevice], cpu: str) -> None:
    """runtime.machine, standard library only, loaded from the repository under qemu -cpu CPU: the model from
    the ARM cpuinfo's part, the features from HWCAP (Pi 4: NEON only; Pi 5: dotprod; max: + i8mm, SVE)."""
    device = devices[cpu]
    script = ("import importlib.util, json, sys\n"
              f"spec = importlib.util.spec_from_file_location('machine', {str(ROOT / 'runtime' / 'machine.py')!r})\n"
              "machine = importlib.util.module_from_spec(spec); sys.modules['machine'] = machine\n"
              "spec.loader.exec_module(machine)\n"
              "import platform; print(json.dumps([platform.machine(), machine.cpu_info().record()]))\n")
    done = device.checked([device.python, "-c", script], what="runtime.machine")
    arch, record = json.loads(done.stdout)
    model, isa, cpu_class = CLASSES[cpu]
    assert arch == "aarch64"
    assert record == {"cpu": model, "cpu_arch": "arm64", "cpu_isa": list(isa), "cpu_class": cpu_class}


@pytest.mark.slow
def test_a_command_runs_in_the_devices_directory_and_environment_and_starts_arm64_children(
        devices: dict[str, EmulatedDevice], monkeypatch: pytest.MonkeyPatch) -> None:
    """The working directory is the device's, the environment its own plus what the caller adds (never the
    host's), /proc/cpuinfo the ARM one, and a child the command starts is arm64 too (the namespace's own
    binfmt_misc: Linux >= 6.7)."""
    release = tuple(int(part) for part in os.uname().release.split(".")[:2] if part.isdigit())
    if release < (6, 7):
        pytest.skip(f"binfmt_misc per user namespace needs Linux >= 6.7, this is {os.uname().release}")
    monkeypatch.setenv("CLLNN_HOST_ONLY", "1")
    device = devices["cortex-a76"]
    script = ("import json, os, platform, subprocess, sys\n"
              "child = subprocess.run([sys.executable, '-c', 'import platform; print(platform.machine())'],\n"
              "                       capture_output=True, text=True, check=True).stdout.strip()\n"
              "print(json.dumps([os.getcwd(), os.environ.get('CLLNN_HOST_ONLY'), os.environ.get('GIVEN'),\n"
              "                  platform.machine(), child, 'CPU part\\t: 0xd0b' in open('/proc/cpuinfo').read()]))\n")
    done = device.checked([device.python, "-c", script], what="a command", env={"GIVEN": "yes"})
    assert json.loads(done.stdout) == [str(device.root), None, "yes", "aarch64", "aarch64", True]
    with pytest.raises(TargetError, match="no program 'no-such-program' in the arm64 root"):
        device.run(["no-such-program"])


@pytest.mark.slow
def test_a_hung_emulated_command_is_stopped_with_its_arm64_children(devices: dict[str, EmulatedDevice]) -> None:
    """qemu, its Python and the arm64 child that Python started: the whole process group goes at the timeout."""
    device = devices["cortex-a72"]
    child = "import os, time; open('child.pid', 'w').write(str(os.getpid())); time.sleep(120)"
    script = (f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}])\n"
              "while not os.path.exists('child.pid'): time.sleep(0.1)\n"
              "open('parent.pid', 'w').write(str(os.getpid())); time.sleep(120)")
    with pytest.raises(TargetError, match="took longer than 25 s; stopped"):
        device.run([device.python, "-c", script], timeout=25)
    pids = [int((device.root / name).read_text()) for name in ("child.pid", "parent.pid")]
    deadline = time.monotonic() + 10  # SIGKILL was sent to the group: a many-threaded qemu takes a moment to go
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _subset(out: Path) -> Path:
    """The fixture run's files of FORMATS (and their stage probes) with a manifest listing only them."""
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    manifest["artifacts"] = [record for record in manifest["artifacts"] if record["format"] in FORMATS]
    (out / "probes").mkdir(parents=True)
    for record in manifest["artifacts"]:
        for name in (record["file"], record["details"]["probe"]["file"]):
            shutil.copyfile(FIXTURE / name, out / name)
    shutil.copyfile(FIXTURE / manifest["check_set"]["file"], out / manifest["check_set"]["file"])
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76"])
def test_verify_on_the_emulated_cpu_gives_the_hosts_verdicts(devices: dict[str, EmulatedDevice], cpu: str,
                                                             aarch64_site: Path, tmp_path: Path) -> None:
    """The files go over with put, `python -m runtime.cli.main verify` runs there on the repository's
    runtime package and the aarch64 wheels, its JSON comes back with get: the same pass / fail per file
    and per check as the host's verify of the same directory (this fixture's int8 files fail top-1 on
    both: a verdict that differs shows either way)."""
    device, files = devices[cpu], _subset(tmp_path / "artifacts")
    for path in sorted(files.rglob("*")):
        if path.is_file():
            device.put(path, PurePosixPath("artifacts") / path.relative_to(files).as_posix())
    done = device.run([device.python, "-m", "runtime.cli.main", "verify", "artifacts", "--json", "verify.json"],
                      env={"PYTHONPATH": f"{ROOT}:{aarch64_site}"})
    assert done.returncode in (0, 1), done.tail(20)
    device.get(PurePosixPath("verify.json"), tmp_path / "verify.json", max_bytes=4 * 1024 * 1024)
    there = json.loads((tmp_path / "verify.json").read_text())
    here = verify(files).to_dict()
    assert done.returncode == (0 if here["passed"] else 1)
    assert there["versions"]["onnxruntime"] == here["versions"]["onnxruntime"]

    def verdicts(report: dict) -> dict[str, tuple[bool, dict[str, bool]]]:
        return {r["format"]: (r["passed"], {check["name"]: check["passed"] for check in r["checks"]})
                for r in report["results"]}

    assert verdicts(there) == verdicts(here) and set(verdicts(here)) == set(FORMATS)
