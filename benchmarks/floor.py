"""The compute floor: how fast an exported model could run at best on this machine.

Three measurements, each JSON-ready, each in a module of its own:

- ``benchmarks.macs.graph_macs(path)``: multiply-accumulates per image, read
  from the exported graph itself (op list and tensor shapes), so the count
  follows the file rather than a hand-kept table that drifts from it.
- ``benchmarks.peak.peak_probe(kind)``: the MACs per second one core reaches
  through the same runtime (LiteRT, one thread, default resolver) on an ideal
  layer: one big FULLY_CONNECTED and one big CONV_2D, compute bound.
- ``benchmarks.profiling.op_profile(path)``: where one batch-1 inference
  spends its time, per op.

``floor_us(macs, peak)`` combines the first two into a lower bound on latency:
a model that takes ten times its floor is bound by something other than
arithmetic (memory, op overhead, small kernels). ``main`` is the suite's
section: all three for every exported file.

Probe models need TensorFlow (``pip install -e .[export]``) the first time;
they are cached under the temp directory afterwards. Everything else needs
only the runtime dependencies, plus ``onnx`` to count an ONNX file's MACs.
"""

from __future__ import annotations

import math
import sys

from benchmarks.common import save, say, section_args
from benchmarks.macs import graph_macs
from benchmarks.peak import PROBE_KINDS, peak_probe
from benchmarks.profiling import op_profile
from export.layout import RunLayout
from runtime.artifacts.manifest import contained, load_manifest


def floor_us(macs: int, peak_macs_per_s: float) -> float:
    """Microseconds ``macs`` take at ``peak_macs_per_s``: no kernel on this core runs faster."""
    if not (peak_macs_per_s > 0 and math.isfinite(peak_macs_per_s)):
        raise ValueError(f"peak_macs_per_s must be a positive finite number, got {peak_macs_per_s!r}")
    if macs < 0:
        raise ValueError(f"macs must be non-negative, got {macs!r}")
    return macs / peak_macs_per_s * 1e6


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.floor --work DIR --json FILE [--quick]``: MACs, peaks and op
    profiles of every exported file; the suite divides section 1's latencies by the floors."""
    args = section_args(argv, "compute floor: MACs per image, single-core peaks, op profiles")
    say("floor: peak probes (float32, int8)")
    peaks = {kind: peak_probe(kind, seconds=0.4 if args.quick else 2.0) for kind in PROBE_KINDS}
    formats, profiles = {}, {}
    layout = RunLayout(args.work)
    for entry in load_manifest(layout.manifest).artifacts:
        path = contained(layout.artifacts, entry.file)
        say(f"floor: {entry.format}: MACs and op profile")
        macs = graph_macs(path)
        kind = "int8" if "int8" in entry.precision else "float32"  # fp16 kernels compute in float32
        formats[entry.format] = {
            "macs": macs["total"], "by_op": macs["by_op"], "uncounted": macs["uncounted"],
            "elementwise": macs["elementwise"]["total"], "peak_kind": kind,
            "floor_us": floor_us(macs["total"], peaks[kind]["macs_per_s"]),
        }
        profiles[entry.format] = op_profile(path, runs=10 if args.quick else 200)
    save(args, {"peaks": peaks, "numpy": peaks["float32"].get("numpy_reference"),
                "formats": formats, "profiles": profiles})
    return 0


if __name__ == "__main__":
    sys.exit(main())
