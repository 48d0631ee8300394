"""Which CPU a figure came from: its model, architecture and the instruction sets that set
int8 and float32 kernel speed, for every benchmark record.

An int8 GEMM runs at about four times float32's rate with VNNI (x86) or the dot-product
instructions (ARM), and loses that edge without them, so a ratio is only meaningful
within one CPU *class*. ``cpu_info()`` reads ``/proc/cpuinfo`` on Linux; on arm64 Linux, when
that file has no ARM ``Features`` line (qemu-user shows the host's x86 file, or an ARM-looking one
without it), the features come from the auxiliary vector the kernel (or qemu) hands every process
(``getauxval(AT_HWCAP)`` / ``AT_HWCAP2``); elsewhere it knows the platform's architecture only and
says the ISA was not recorded. ``parse_cpuinfo`` (the file's text) and ``decode_hwcap`` (the two
words) are pure functions, so any machine's can be tested.
``machine_line`` is the one line printed and stored with every figure (the bench and select
tables, the sweep, the report, the benchmarks). Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The features recorded, by the kernel's names, in the order they are listed.
FEATURES = {  # by architecture: the features recorded, by the kernel's names, in this order
    "x86-64": ("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"),
    "arm64": ("asimd", "asimddp", "i8mm", "sve"),
    "arm32": ("neon",),
}
ARCHES = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm64", "arm64": "arm64",
          "armv7l": "arm32", "armv8l": "arm32"}
# /proc/cpuinfo on aarch64 names no model: Arm Ltd's (implementer 0x41) common parts.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
}
NOT_RECORDED = "ISA not recorded"
# The auxiliary vector's entries (include/uapi/linux/auxvec.h) and arm64's bits in them
# (arch/arm64/include/uapi/asm/hwcap.h): HWCAP_ASIMD 1 << 1, HWCAP_ASIMDDP 1 << 20, HWCAP_SVE 1 << 22,
# HWCAP2_I8MM 1 << 13.
AT_HWCAP, AT_HWCAP2 = 16, 26
ARM64_HWCAP = {"asimd": (AT_HWCAP, 1), "asimddp": (AT_HWCAP, 20), "i8mm": (AT_HWCAP2, 13), "sve": (AT_HWCAP, 22)}


@dataclass(frozen=True)
class CpuInfo:
    """``isa`` is None when nothing said which features the CPU has (not the same as none)."""

    model: str
    arch: str  # "x86-64", "arm64", "arm32", or the platform's own name for others
    isa: tuple[str, ...] | None

    @property
    def cpu_class(self) -> str:
        """The int8 class: "x86-64 AVX-512 VNNI", "x86-64 AVX2 (no VNNI)", "arm64 dotprod+i8mm", ..."""
        if self.isa is None:
            return f"{self.arch}, {NOT_RECORDED}"
        has = set(self.isa)
        if self.arch == "x86-64":
            for feature, name in (("amx_int8", "AMX int8"), ("avx512_vnni", "AVX-512 VNNI"),
                                  ("avx_vnni", "AVX-VNNI"), ("avx512f", "AVX-512 (no VNNI)"),
                                  ("avx2", "AVX2 (no VNNI)")):
                if feature in has:
                    return f"x86-64 {name}"
            return "x86-64 (no AVX2)"
        if self.arch == "arm64":
            dot = [name for feature, name in (("asimddp", "dotprod"), ("i8mm", "i8mm")) if feature in has]
            return f"arm64 {'+'.join(dot)}" if dot else "arm64 NEON (no dotprod)"
        return f"{self.arch} NEON" if "neon" in has else f"{self.arch} (no NEON)"

    @property
    def int8_dot(self) -> bool | None:
        """Has an int8 dot-product instruction (x86 VNNI or AMX, ARM dotprod): int8 GEMMs run at
        several times float32's rate. None when the ISA was not recorded."""
        if self.isa is None:
            return None
        return bool({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & set(self.isa))

    @property
    def isa_line(self) -> str:
        """The recorded features, e.g. "ISA: fma avx2 avx512f avx512_vnni avx_vnni"."""
        if self.isa is None:
            return NOT_RECORDED
        return "ISA: " + (" ".join(self.isa) or "none of " + " ".join(FEATURES.get(self.arch, ())))

    def record(self) -> dict[str, Any]:
        """The fields a benchmark record's ``machine`` carries."""
        return {"cpu": self.model, "cpu_arch": self.arch,
                "cpu_isa": None if self.isa is None else list(self.isa), "cpu_class": self.cpu_class}

    @classmethod
    def from_record(cls, machine: Mapping[str, Any]) -> CpuInfo:
        """Back from ``record()``'s fields; a record written before they existed has no ISA."""
        isa = machine.get("cpu_isa")
        return cls(model=machine.get("cpu") or machine.get("processor") or "unknown CPU",
                   arch=machine.get("cpu_arch") or _arch(machine.get("processor") or "") or "unknown arch",
                   isa=None if isa is None else tuple(isa))


def parse_cpuinfo(text: str, machine: str = "") -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (its first processor's block: the cores of
    one machine share their features). ``machine`` is ``platform.machine()``; without it
    the architecture is read from the text. Architectures other than x86 and ARM get no ISA."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() and fields:
            break
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    flags = (fields.get("flags") or fields.get("features") or "").split()
    text_arch = "x86-64" if "flags" in fields else "arm64" if "asimd" in flags else "arm32" if "neon" in flags else None
    arch = _arch(machine) or text_arch or "unknown arch"
    if text_arch is not None and (text_arch == "x86-64") != (arch == "x86-64"):
        # another machine's file: qemu-user shows an emulated arm64 process the host's x86 one
        return CpuInfo(model=machine or arch, arch=arch, isa=None)
    known = FEATURES.get(arch)
    isa = None if known is None or not flags else tuple(f for f in known if f in flags)
    return CpuInfo(model=_model(fields) or machine or arch, arch=arch, isa=isa)


def decode_hwcap(hwcap: int, hwcap2: int) -> tuple[str, ...]:
    """The recorded arm64 features (``FEATURES["arm64"]``, in its order) set in the auxiliary vector's
    AT_HWCAP and AT_HWCAP2 words, by the Linux kernel's bit positions."""
    words = {AT_HWCAP: hwcap, AT_HWCAP2: hwcap2}
    return tuple(name for name in FEATURES["arm64"] if words[ARM64_HWCAP[name][0]] >> ARM64_HWCAP[name][1] & 1)


def cpu_info() -> CpuInfo:
    """This machine's CpuInfo: /proc/cpuinfo on Linux (on arm64 with the auxiliary vector's features
    when the file names none), the platform's architecture elsewhere."""
    machine = platform.machine()
    try:
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text(), machine)
    except OSError:
        info = CpuInfo(model=machine or "unknown CPU", arch=_arch(machine) or "unknown arch", isa=None)
    if info.isa is None and info.arch == "arm64" and sys.platform.startswith("linux"):
        words = _auxv_hwcap()
        if words is not None:
            return CpuInfo(model=info.model, arch=info.arch, isa=decode_hwcap(*words))
    return info


def _auxv_hwcap() -> tuple[int, int] | None:
    """AT_HWCAP and AT_HWCAP2 through the C library's getauxval (glibc >= 2.16, musl); None without it."""
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return None
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return int(getauxval(AT_HWCAP)), int(getauxval(AT_HWCAP2))


def cpu_model() -> str:
    """The CPU's marketing name where the OS says it (Linux), else the architecture."""
    return cpu_info().model


def machine_line(cpu: CpuInfo | Mapping[str, Any] | None = None) -> str:
    """Which CPU a figure came from, in one line: "CPU class x86-64 AVX2 (no VNNI): AMD EPYC 7B13
    (ISA: fma avx2); 2 logical cores".

    ``cpu``: None for this machine; a benchmark record's ``machine`` (``CpuInfo.record``'s fields,
    its recorded class and ``cpu_count`` where written); or a ``CpuInfo`` (cores not known, not said).
    """
    if cpu is None:
        info, cores, cpu_class = cpu_info(), os.cpu_count(), None
    elif isinstance(cpu, Mapping):
        info, cores, cpu_class = CpuInfo.from_record(cpu), cpu.get("cpu_count"), cpu.get("cpu_class")
    else:
        info, cores, cpu_class = cpu, None, None
    line = f"CPU class {cpu_class or info.cpu_class}: {info.model} ({info.isa_line})"
    return f"{line}; {cores} logical cores" if cores else line


def _arch(machine: str) -> str:
    return ARCHES.get(machine.lower(), machine)


def _model(fields: dict[str, str]) -> str:
    """x86 names the model; some ARM kernels and boards do ("Model"); else Arm's part number."""
    for key in ("model name", "cpu model", "model"):
        value = fields.get(key, "")
        if value and not value.isdigit():  # x86's "model" is a number
            return value
    part, implementer = fields.get("cpu part", ""), fields.get("cpu implementer", "")
    if implementer == "0x41" and part in ARM_PARTS:
        return f"Arm {ARM_PARTS[part]}"
    return f"ARM implementer {implementer} part {part}" if part else ""
