"""The records a manifest holds, one frozen dataclass each, with their JSON forms.

Each ``from_dict`` reads what the schema (``runtime.artifacts.manifest_schema``) has already checked,
and tolerates keys it does not know: the layout may grow, never break (a manifest written by an older
export still loads). ``runtime.artifacts.manifest`` puts them together as a ``Manifest``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: how to feed it or read it back."""

    name: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension (the batch)
    dtype: str  # numpy dtype name: "float32", "uint8", "int8"
    scale: float | None = None  # quantization: real = scale * (q - zero_point)
    zero_point: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in data["shape"]),
            dtype=str(data["dtype"]),
            scale=None if data.get("scale") is None else float(data["scale"]),
            zero_point=None if data.get("zero_point") is None else int(data["zero_point"]),
        )


@dataclass(frozen=True)
class CheckRecord:
    """One export-time check of a file: its verdict, what was measured, what was expected."""

    passed: bool
    value: Any
    expected: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(passed=bool(data["passed"]), value=data.get("value"), expected=str(data.get("expected", "")))


@dataclass(frozen=True)
class ProbeRecord:
    """An artefact's stage probe: the same graph with one named output per stage, or why there is none."""

    file: str | None = None  # relative to the manifest's directory (probes/<artefact file>)
    sha256: str | None = None
    size: int | None = None
    stages: tuple[str, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.file is None:
            return {"error": self.error or "no probe"}
        return {"file": self.file, "sha256": self.sha256, "size": self.size, "stages": list(self.stages),
                "outputs": [spec.to_dict() for spec in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeRecord:
        if "file" not in data:
            return cls(error=str(data.get("error", "no probe")))
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]),
                   stages=tuple(str(s) for s in data.get("stages", ())),
                   outputs=tuple(TensorSpec.from_dict(t) for t in data.get("outputs", ())))


@dataclass(frozen=True)
class ListedFile:
    """A file written beside an artefact (its C sources), relative to the manifest's directory."""

    file: str
    sha256: str
    size: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ListedFile:
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]))


MCU_DIR = "mcu"  # beside the artefacts: a microcontroller file's C sources (McuRecord.sources)


@dataclass(frozen=True)
class McuRecord:
    """A microcontroller file's memory budget, measured on TFLite Micro, and its C sources
    (``manifest.json``: ``details.mcu``; ``export.formats.mcu`` measures and writes it)."""

    flash_bytes: int  # the model's bytes, as the C array holds them in flash
    arena_min_bytes: int  # the smallest tensor arena TFLM ran the file in
    arena_bytes: int  # what to allocate: the minimum plus ``runtime.backends.tflm.arena_margin``
    stage_activation_bytes: dict[str, int] = field(default_factory=dict)  # stage -> its peak op working set
    sources: tuple[ListedFile, ...] = ()  # cllnn_model.h / cllnn_model.cc

    @property
    def arena_margin_bytes(self) -> int:
        return self.arena_bytes - self.arena_min_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": [asdict(source) for source in self.sources]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> McuRecord:
        return cls(flash_bytes=int(data["flash_bytes"]), arena_min_bytes=int(data["arena_min_bytes"]),
                   arena_bytes=int(data["arena_bytes"]),
                   stage_activation_bytes={str(k): int(v) for k, v in data.get("stage_activation_bytes", {}).items()},
                   sources=tuple(ListedFile.from_dict(s) for s in data.get("sources", ())))


@dataclass(frozen=True)
class ArtifactDetails:
    """What the export measured and checked about one file (``manifest.json``: ``details``)."""

    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # against the trained model
    checks: dict[str, CheckRecord] = field(default_factory=dict)  # the export-time gate
    reproducible: bool | None = None  # same inputs give the same bytes?
    reproducibility: str = ""
    probe: ProbeRecord | None = None
    # How the file was quantized: graph, calibration, recipe (export.pipeline.convert.quantization_record).
    quantization: dict[str, Any] = field(default_factory=dict)
    mcu: McuRecord | None = None  # a file for microcontrollers (runtime "tflm"): memory and C sources

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "description": self.description,
            "metrics": dict(self.metrics),
            "checks": {name: asdict(check) for name, check in self.checks.items()},
            "reproducible": self.reproducible,
            "reproducibility": self.reproducibility,
        }
        if self.probe is not None:
            data["probe"] = self.probe.to_dict()
        if self.quantization:
            data["quantization"] = self.quantization
        if self.mcu is not None:
            data["mcu"] = self.mcu.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactDetails:
        probe = data.get("probe")
        reproducible = data.get("reproducible")
        return cls(
            description=str(data.get("description", "")),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            checks={str(k): CheckRecord.from_dict(v) for k, v in data.get("checks", {}).items()},
            reproducible=None if reproducible is None else bool(reproducible),
            reproducibility=str(data.get("reproducibility", "")),
            probe=None if probe is None else ProbeRecord.from_dict(probe),
            quantization=dict(data.get("quantization") or {}),
            mcu=None if data.get("mcu") is None else McuRecord.from_dict(data["mcu"]),
        )


@dataclass(frozen=True)
class CheckSetRecord:
    """The check set beside the artefacts (``manifest.json``: ``check_set``).

    A few hundred labelled images and the trained model's outputs on them,
    kept at export time so a device can check its files without TensorFlow
    (``runtime.artifacts.checkset``, ``cllnn-bench verify``).
    """

    file: str  # relative to the manifest's directory
    sha256: str
    size: int
    images: int
    source: str  # the data source the images come from ("embedded", a path, ...)
    split: str  # the split they come from: the first ``images`` of it
    stages: tuple[str, ...]  # the reference outputs it holds, in the model's order; "output" = probabilities

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckSetRecord:
        return cls(file=str(data["file"]), sha256=str(data["sha256"]), size=int(data["size"]),
                   images=int(data["images"]), source=str(data["source"]), split=str(data["split"]),
                   stages=tuple(str(s) for s in data["stages"]))


@dataclass(frozen=True)
class RuntimeNeeds:
    """What a file asks of the runtime that loads it (``manifest.json``: an entry's ``needs``), read from
    the file at convert time, and the oldest releases that load it (``runtime.artifacts.compat``).

    TFLite: each builtin op with the versions its operator codes carry, and the operand -> result dtype
    signatures of its nodes (``"uint8->int16"``; some kernels accepted a signature later than their
    op version says). ONNX: the opset per domain (``"ai.onnx"`` for the default one) and the IR version.
    ``oldest`` maps a runtime package to its oldest release that loads the file (None: no release
    does); ``reasons`` names what sets each minimum (``"FULLY_CONNECTED v12 (TensorFlow Lite 2.17.0)"``).
    """

    op_versions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    op_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)
    ir_version: int | None = None
    oldest: dict[str, str | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"oldest": dict(self.oldest), "reasons": dict(self.reasons)}
        if self.op_versions:
            data["op_versions"] = {op: list(v) for op, v in self.op_versions.items()}
            data["op_types"] = {op: list(t) for op, t in self.op_types.items()}
        if self.opsets:
            data["opsets"] = dict(self.opsets)
            data["ir_version"] = self.ir_version
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeNeeds:
        ir_version = data.get("ir_version")
        return cls(
            op_versions={str(k): tuple(int(v) for v in vs) for k, vs in data.get("op_versions", {}).items()},
            op_types={str(k): tuple(str(t) for t in ts) for k, ts in data.get("op_types", {}).items()},
            opsets={str(k): int(v) for k, v in data.get("opsets", {}).items()},
            ir_version=None if ir_version is None else int(ir_version),
            oldest={str(k): None if v is None else str(v) for k, v in data.get("oldest", {}).items()},
            reasons={str(k): str(v) for k, v in data.get("reasons", {}).items()},
        )

    def describe(self) -> str:
        """One line: the oldest release of each runtime, and why (``"ai-edge-litert >= 1.0.1; ..."``)."""
        return "; ".join(f"{package} >= {release}" if release is not None else f"no {package} release"
                         for package, release in sorted(self.oldest.items())) or "not recorded"


@dataclass(frozen=True)
class ArtifactEntry:
    """One exported file as the manifest records it."""

    file: str  # relative to the manifest's directory
    format: str  # a name of the format registry (export.formats.registry)
    runtime: str  # one of ``BACKENDS``
    precision: str  # "float32", "float16", "dynamic-int8", "int8"
    sha256: str
    size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int] = field(default_factory=dict)  # op type -> count
    details: ArtifactDetails = field(default_factory=ArtifactDetails)
    needs: RuntimeNeeds | None = None  # None: exported before op versions were recorded

    def delivered_files(self) -> list[tuple[str, str]]:
        """(file, SHA-256) of what a user takes away: the file, and its C sources where it has them."""
        sources = self.details.mcu.sources if self.details.mcu is not None else ()
        return [(self.file, self.sha256), *((source.file, source.sha256) for source in sources)]

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "needs"},
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "details": self.details.to_dict(),
            **({} if self.needs is None else {"needs": self.needs.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactEntry:
        return cls(
            file=str(data["file"]),
            format=str(data["format"]),
            runtime=str(data["runtime"]),
            precision=str(data["precision"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            ops={str(k): int(v) for k, v in data.get("ops", {}).items()},
            details=ArtifactDetails.from_dict(data.get("details", {})),
            needs=None if data.get("needs") is None else RuntimeNeeds.from_dict(data["needs"]),
        )


@dataclass(frozen=True)
class SourceModel:
    """The trained model the files were exported from (``manifest.json``: ``source_model``)."""

    file: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, **({"sha256": self.sha256} if self.sha256 is not None else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceModel:
        return cls(file=str(data.get("file", "")), sha256=None if data.get("sha256") is None else str(data["sha256"]))


# The keys of the metadata that ``ManifestMetadata`` types, in the order an export writes them.
_METADATA_KEYS = ("source_model", "config", "data", "unroll", "int8_graph", "failed", "versions")


@dataclass(frozen=True)
class ManifestMetadata:
    """What produced the files, beside their entries: the trained model, the config, the data, the
    unroll report, the int8 graph, the formats that failed, the library versions.

    Each key is None when the manifest has none (an older or hand-written one); ``extra`` keeps keys a
    later export added, so a manifest read and written again loses nothing.
    """

    source_model: SourceModel | None = None
    config: dict[str, dict[str, Any]] | None = None  # the config sections the export ran with
    data: dict[str, Any] | None = None  # the data summary, with calibration_images and check_images
    unroll: dict[str, Any] | None = None  # what the unroller left out, and the equivalence figures
    int8_graph: dict[str, Any] | None = None
    failed: dict[str, str] | None = None  # format -> why it failed to convert
    versions: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A config section the export recorded (``{}`` when it recorded none)."""
        return dict((self.config or {}).get(name, {}))

    @property
    def tolerance_rows(self) -> dict[str, Any]:
        """The tolerance table the export ran with, per precision (``{}``: the defaults)."""
        return self.section("tolerances")

    @property
    def source_file(self) -> str:
        return "" if self.source_model is None else self.source_model.file

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key in _METADATA_KEYS:
            value = getattr(self, key)
            if value is not None:
                data[key] = value.to_dict() if isinstance(value, SourceModel) else value
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestMetadata:
        known = {key: data[key] for key in _METADATA_KEYS if key in data}
        if "source_model" in known:
            known["source_model"] = SourceModel.from_dict(known["source_model"])
        return cls(**known, extra={k: v for k, v in data.items() if k not in _METADATA_KEYS})
