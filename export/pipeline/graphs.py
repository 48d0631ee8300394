"""The graphs a conversion converts from: which variants its formats need (the float graph, the int8
graph, the split projection), each unrolled from the trained model and proven against it, then
exported once as SavedModels for the converters (``export.pipeline.convert``).

May import: ``export.graph``, ``export.formats``, ``cllnn_edge``, ``runtime``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cllnn_edge.config import PLAIN, Config
from export.formats.registry import FLOAT_GRAPH, INT8_GRAPH, SPLIT_GRAPH, Format
from export.graph.reference import KerasRunner
from export.graph.unroll import UnrollResult, prove_equivalent, unroll
from runtime.checks.compare import Comparison
from runtime.checks.tolerances import Tolerance

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Graphs:
    """The SavedModels in the work directory: graph kind (``Format.graph``) -> (main, probe)."""

    saved: dict[str, tuple[Path, Path]]
    float_layers: tuple[str, ...] = ()  # of the int8 graph: layers its converters keep in float32

    def kind_for(self, fmt: Format) -> str:
        """The graph the format asks for where it was built (no int8 variant with
        ``int8_graph = "plain"``), else the float graph."""
        return fmt.graph if fmt.graph in self.saved else FLOAT_GRAPH

    def for_format(self, fmt: Format) -> tuple[Path, Path, tuple[str, ...]]:
        """That graph's SavedModels, and the layers its converters keep float."""
        kind = self.kind_for(fmt)
        return (*self.saved[kind], self.float_layers if kind == INT8_GRAPH else ())


@dataclass(frozen=True)
class Unrolled:
    """The unrolled graphs the formats convert from (graph kind -> graph, float first), each proven
    against the trained model, and what the manifest records of them."""

    graphs: dict[str, UnrollResult]
    equivalence: Comparison  # of the float graph
    removed: dict[str, Any]  # what the float graph leaves out (``UnrollResult.removed_summary``)
    int8_graph: dict[str, Any]  # the int8 variant built, its float layers and deviation ({} without int8)


def unroll_all(
    reference: KerasRunner, formats: tuple[Format, ...], cfg: Config, images: np.ndarray, progress: Progress
) -> Unrolled:
    """The graph variants ``formats`` need, in a fixed order: the float graph always; the int8 graph
    when a calibrated format converts from it and ``export.int8_graph`` is not plain; the split
    projection for int16x8."""
    float32, equivalence = _unroll_float(reference, images, cfg.tolerances["float32"], progress)
    graphs, int8_graph = {FLOAT_GRAPH: float32}, {}
    calibrated = [f for f in formats if f.graph == INT8_GRAPH]
    if calibrated:
        int8_graph = {"variant": cfg.export.int8_graph}
    if calibrated and cfg.export.int8_graph != PLAIN:
        tolerance = cfg.tolerances[calibrated[0].precision].of_int8_graph()
        graphs[INT8_GRAPH], deviation = _unroll_int8(reference, images, cfg.export.int8_graph, tolerance, progress)
        int8_graph.update(float_layers=list(graphs[INT8_GRAPH].float_layers),
                          max_abs_vs_trained=stage_max_abs(deviation))
    if any(f.graph == SPLIT_GRAPH for f in formats):
        graphs[SPLIT_GRAPH] = unroll(reference.source, split_projection=True)
        prove_equivalent(reference, graphs[SPLIT_GRAPH], images, cfg.tolerances["float32"])
        progress("unroll: the reservoir's input projection split in two exact parts, for int16x8")
    return Unrolled(graphs, equivalence, float32.removed_summary(), int8_graph)


def _unroll_float(
    reference: KerasRunner, images: np.ndarray, tolerance: Tolerance, progress: Progress
) -> tuple[UnrollResult, Comparison]:
    """The static graph every format can convert from, proven equal to the trained model."""
    progress(f"unroll: {reference.source.name} -> static graph")
    result = unroll(reference.source)
    equivalence = prove_equivalent(reference, result, images, tolerance)
    removed = result.removed_summary()
    progress(
        f"unroll: equivalent on {len(images)} test images (max abs "
        f"{equivalence.metrics['max_abs']:.1e}); left out {removed['weight_bytes']:,} weight bytes, "
        f"{removed['macs_per_image']:,} MACs per image"
    )
    return result, equivalence


def _unroll_int8(
    reference: KerasRunner, images: np.ndarray, variant: str, tolerance: Tolerance, progress: Progress
) -> tuple[UnrollResult, Comparison]:
    """The int8 graph ``variant``; its deviation from the trained model is bounded, not zero."""
    int8 = unroll(reference.source, int8_graph=variant)
    deviation = prove_equivalent(reference, int8, images, tolerance)
    progress(f"unroll: {int8.name}, max abs {deviation.metrics['max_abs']:.1e} from the trained model"
             + (f"; {', '.join(int8.float_layers)} stay float32" if int8.float_layers else ""))
    return int8, deviation


def stage_max_abs(comparison: Comparison) -> dict[str, float]:
    return {stage.stage: stage.max_abs for stage in comparison.stages}


def export_graphs(work: Path, graphs: dict[str, UnrollResult]) -> Graphs:
    saved = {}
    for kind, graph in graphs.items():
        main, probe = work / f"saved_model_{kind}", work / f"saved_model_{kind}_probe"
        graph.model.export(str(main), verbose=False)
        graph.probe.export(str(probe), verbose=False)
        saved[kind] = (main, probe)
    int8 = graphs.get(INT8_GRAPH)
    return Graphs(saved, float_layers=int8.float_layers if int8 else ())
