"""emulated:CPU: an arm64 Python under the real qemu-user, in a root made by the real mmdebstrap: the
CPU class runtime.machine reads there, commands, their children and their ends. The device runtimes on
the emulated CPUs (the main job's files verified through ``target run``, the same verdicts as the host's)
are tested on the main job itself: tests/e2e/test_main_job.py.

Without qemu-user-static / mmdebstrap (scripts/ensure-qemu installs them where it can) the tests that
need them skip, and fail where CI is set. The root and the wheels are cached (XDG_CACHE_HOME): the
first run makes them (about a minute each), later runs reuse them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.errors import TargetError, exit_code_of
from export.targets.device import cache_home
from export.targets.emulated import (MIDR, EmulatedDevice, RootRecipe, ensure_root,
                                     fake_cpuinfo, missing_tools)
from export.targets.spec import EMULATED_CPUS, parse_target
from runtime.machine import CpuInfo, parse_cpuinfo
from tests.export.processes import alive

ROOT = Path(__file__).parents[2]
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
    while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)]

