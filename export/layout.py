"""Where everything of a ``cllnn-export run`` lives, in one place::

    train/       model.keras, history.json, preprocessing.json
    artifacts/   the exported files, probes/, manifest.json
    parity.json  parity.xml
    bench.json
    selection.json   the choice on this machine (cllnn-bench select's record), written in every case
    deploy/      the chosen file, its manifest.json and selection.json (when a file was chosen)
    devices/     NAME/ per device (cllnn-export target run): probe, verify, bench, selection, target.json
    sweep/       with ``run --sweep``: the precision variants, their manifest.json, sweep.json / .md / .png
    report.json  report.md  report.html  plots/*.png
    .stages/     one record per completed stage: its key and its output files' SHA-256
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cllnn_edge.train_files import HISTORY_FILE, MODEL_FILE
from runtime.deploy.choose import SELECTION_NAME
from runtime.artifacts.manifest import MANIFEST_NAME

# The precision sweep's own files, in the sweep directory (``export.pipeline.sweep`` writes them).
SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "sweep.json", "sweep.md", "sweep.png"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory."""

    root: Path

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train_dir / MODEL_FILE

    @property
    def history(self) -> Path:
        return self.train_dir / HISTORY_FILE

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def manifest(self) -> Path:
        return self.artifacts / MANIFEST_NAME

    @property
    def parity_json(self) -> Path:
        return self.root / "parity.json"

    @property
    def parity_junit(self) -> Path:
        return self.root / "parity.xml"

    @property
    def bench(self) -> Path:
        return self.root / "bench.json"

    @property
    def selection(self) -> Path:
        return self.root / SELECTION_NAME

    @property
    def deploy(self) -> Path:
        return self.root / "deploy"

    @property
    def deploy_selection(self) -> Path:
        """The selection.json inside deploy/: present when select chose a file and wrote deploy/."""
        return self.deploy / SELECTION_NAME

    @property
    def sweep(self) -> Path:
        """The precision sweep's directory (``export.pipeline.sweep``), written by ``run --sweep``."""
        return self.root / "sweep"

    @property
    def sweep_json(self) -> Path:
        return self.sweep / SWEEP_JSON

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_markdown(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def devices(self) -> Path:
        """One directory per device a run's files were taken to (``cllnn-export target run``); absent
        before any was."""
        return self.root / "devices"

    def device(self, name: str) -> Path:
        """What ``cllnn-export target run`` brought back from the device ``name``: its probe, verify,
        bench and selection JSON and target.json (``export.targets.results.RESULT_FILES``)."""
        return self.devices / name

    def stage_record(self, stage: str) -> Path:
        """Where a completed stage records the key of its inputs and the checksums of its outputs."""
        return self.root / ".stages" / f"{stage}.json"
