"""runtime.machine: the CPU's model, ISA and int8 class from /proc/cpuinfo (on arm64 also the auxiliary
vector's HWCAP words), for every benchmark record."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.machine import FEATURES, CpuInfo, cpu_info, cpu_model, decode_hwcap, machine_line, parse_cpuinfo

SAMPLES = Path(__file__).parent / "cpuinfo"
CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.parametrize(
    ("sample", "machine", "model", "arch", "isa", "cpu_class"),
    [
        ("epyc_avx2.txt", "x86_64", "AMD EPYC 7B13", "x86-64", ("fma", "avx2"), "x86-64 AVX2 (no VNNI)"),
        ("xeon_avx512_vnni.txt", "x86_64", "Intel(R) Xeon(R) Processor", "x86-64",
         ("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni"), "x86-64 AVX-512 VNNI"),
        ("neoverse_v1_i8mm.txt", "aarch64", "Arm Neoverse-V1", "arm64",
         ("asimd", "asimddp", "i8mm", "sve"), "arm64 dotprod+i8mm"),
        ("cortex_a72_neon.txt", "aarch64", "Arm Cortex-A72", "arm64", ("asimd",), "arm64 NEON (no dotprod)"),
    ],
)
def test_samples(sample: str, machine: str, model: str, arch: str, isa: tuple[str, ...], cpu_class: str) -> None:
    text = (SAMPLES / sample).read_text()
    info = parse_cpuinfo(text, machine)
    assert info == CpuInfo(model=model, arch=arch, isa=isa)
    assert info.cpu_class == cpu_class
    assert info.isa_line == "ISA: " + " ".join(isa)
    assert parse_cpuinfo(text) == info  # the architecture read from the text alone


@pytest.mark.parametrize(
    ("flags", "cpu_class"),
    [
        ("fma avx2 avx512f avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8", "x86-64 AMX int8"),
        ("fma avx2 avx_vnni", "x86-64 AVX-VNNI"),  # e.g. Alder Lake: VNNI on 256-bit registers only
        ("fma avx2 avx512f avx512bw", "x86-64 AVX-512 (no VNNI)"),  # e.g. Skylake-SP
        ("sse4_2 avx", "x86-64 (no AVX2)"),
    ],
)
def test_x86_class_ladder(flags: str, cpu_class: str) -> None:
    info = parse_cpuinfo(f"model name\t: a CPU\nflags\t\t: fpu sse sse2 {flags}\n", "x86_64")
    assert info.cpu_class == cpu_class


def test_features_are_whole_words() -> None:
    """"svei8mm" (SVE's int8 matrix multiply) is not "i8mm"; "avx512_vnni" is not "avx_vnni"."""
    info = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd asimddp svei8mm\n")
    assert info.isa == ("asimd", "asimddp") and info.cpu_class == "arm64 dotprod"
    assert parse_cpuinfo("flags\t: avx2 avx512f avx512_vnni\n").isa == ("avx2", "avx512f", "avx512_vnni")


def test_no_cpuinfo_says_the_isa_was_not_recorded() -> None:
    """macOS has no /proc/cpuinfo, and an s390x's features are not ones this file knows:
    the platform's architecture only, and no guess at the ISA."""
    mac = parse_cpuinfo("", "arm64")
    assert mac == CpuInfo(model="arm64", arch="arm64", isa=None)
    assert mac.cpu_class == "arm64, ISA not recorded" and mac.isa_line == "ISA not recorded"
    s390 = parse_cpuinfo("vendor_id       : IBM/S390\nfeatures\t: esan3 zarch stfle msa\n", "s390x")
    assert s390.isa is None and s390.cpu_class == "s390x, ISA not recorded"


@pytest.mark.parametrize(
    ("hwcap", "hwcap2", "isa", "cpu_class"),
    [  # AT_HWCAP / AT_HWCAP2 as qemu 7.2's qemu-aarch64 hands them to a process with -cpu ...
        (0x8FB, 0x0, ("asimd",), "arm64 NEON (no dotprod)"),  # cortex-a72 (Raspberry Pi 4)
        (0x119FFB, 0x0, ("asimd", "asimddp"), "arm64 dotprod"),  # cortex-a76 (Raspberry Pi 5)
        (0xECFFFFFB, 0x7F877FFF, ("asimd", "asimddp", "i8mm", "sve"), "arm64 dotprod+i8mm"),  # max
        (1 << 1, 0, ("asimd",), "arm64 NEON (no dotprod)"),  # one bit each, by the kernel's hwcap.h
        (1 << 20, 0, ("asimddp",), "arm64 dotprod"),
        (1 << 22, 0, ("sve",), "arm64 NEON (no dotprod)"),
        (0, 1 << 13, ("i8mm",), "arm64 i8mm"),
        (0, 1 << 9, (), "arm64 NEON (no dotprod)"),  # HWCAP2_SVEI8MM is not i8mm
        (1 << 13, 0, (), "arm64 NEON (no dotprod)"),  # i8mm's bit, but in the wrong word (HWCAP_JSCVT)
    ],
)
def test_hwcap_words_decode_by_the_kernels_bits(hwcap: int, hwcap2: int, isa: tuple[str, ...], cpu_class: str) -> None:
    assert decode_hwcap(hwcap, hwcap2) == isa
    assert CpuInfo(model="Arm Cortex-A76", arch="arm64", isa=isa).cpu_class == cpu_class


def test_another_machines_cpuinfo_records_no_isa() -> None:
    """qemu-user shows an emulated arm64 process the host's x86 /proc/cpuinfo: neither its model nor its
    flags are the arm64 CPU's, so the ISA is left to the auxiliary vector; an ARM-looking file without a
    Features line (the emulated targets' own) names the part but no features."""
    x86 = (SAMPLES / "epyc_avx2.txt").read_text()
    assert parse_cpuinfo(x86, "aarch64") == CpuInfo(model="aarch64", arch="arm64", isa=None)
    arm = (SAMPLES / "cortex_a72_neon.txt").read_text()
    assert parse_cpuinfo(arm, "x86_64") == CpuInfo(model="x86_64", arch="x86-64", isa=None)
    bare = "processor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0b\n"
    assert parse_cpuinfo(bare, "aarch64") == CpuInfo(model="Arm Cortex-A76", arch="arm64", isa=None)


def test_record_round_trip_and_a_record_from_before_the_isa() -> None:
    info = parse_cpuinfo((SAMPLES / "epyc_avx2.txt").read_text(), "x86_64")
    record = info.record()
    assert record == {"cpu": "AMD EPYC 7B13", "cpu_arch": "x86-64", "cpu_isa": ["fma", "avx2"],
                      "cpu_class": "x86-64 AVX2 (no VNNI)"}
    assert CpuInfo.from_record(record) == info
    old = CpuInfo.from_record({"cpu": "AMD EPYC", "processor": "x86_64", "cpu_count": 2})
    assert old == CpuInfo(model="AMD EPYC", arch="x86-64", isa=None)
    assert old.cpu_class == "x86-64, ISA not recorded"


def test_one_machine_line_for_this_machine_a_record_and_a_cpu() -> None:
    """The line every figure carries: class, model and ISA; the cores where known."""
    epyc = parse_cpuinfo((SAMPLES / "epyc_avx2.txt").read_text(), "x86_64")
    assert machine_line(epyc) == "CPU class x86-64 AVX2 (no VNNI): AMD EPYC 7B13 (ISA: fma avx2)"
    assert machine_line({**epyc.record(), "cpu_count": 4}) == machine_line(epyc) + "; 4 logical cores"
    # a record from before the ISA was recorded keeps the class it names
    old = {"cpu": "AMD EPYC", "processor": "x86_64", "cpu_class": "x86-64 AVX2 (no VNNI)"}
    assert machine_line(old) == "CPU class x86-64 AVX2 (no VNNI): AMD EPYC (ISA not recorded)"
    here = cpu_info()
    assert machine_line().startswith(f"CPU class {here.cpu_class}: {here.model} (")
    assert machine_line().endswith(" logical cores")


@pytest.mark.skipif(not CPUINFO.is_file(), reason="needs Linux's /proc/cpuinfo")
def test_this_machine() -> None:
    info = cpu_info()
    assert info == parse_cpuinfo(CPUINFO.read_text(), platform.machine())
    assert cpu_model() == info.model and info.model
    words = set(CPUINFO.read_text().split())  # the same features as `grep -o -w` finds
    assert info.isa is not None
    assert set(info.isa) == words & set(FEATURES[info.arch])


def test_needs_only_the_standard_library() -> None:
    """Loaded on its own with numpy blocked: the module a device's record relies on."""
    path = Path(__file__).parents[2] / "runtime" / "machine.py"
    script = (
        "import sys, importlib.util\n"
        "sys.modules['numpy'] = None\n"
        f"spec = importlib.util.spec_from_file_location('machine', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['machine'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(module.cpu_info().cpu_class)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == cpu_info().cpu_class
