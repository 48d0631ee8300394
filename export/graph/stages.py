"""The stage names of the unrolled CLLNN: one home for the recipe, the probes, parity and the MCU report.

A stage is a group of layers: the CNN, the reservoir, the LSTM and the softmax head (``STAGES``).
Recipes (``cnn=int16x8,head=int8``), the layers of each stage (``export.formats.precision``) and the
MCU report's peak working set per stage use these names.

The stage probe, the check set, the manifest's ``stages`` and parity.json name each stage's
*output* instead (``PROBE_OUTPUTS``): the first three as their stage, the head's as ``"output"``
(``PROBABILITIES``), the probabilities every format returns. That name is on disk in every run
directory and ``runtime`` reads it without importing ``export``, so it stays. This module imports
nothing, so a command that needs no TensorFlow may read it.
"""

from __future__ import annotations

STAGES = ("cnn", "reservoir", "lstm", "head")  # the stages, in graph order
HEAD = STAGES[-1]
PROBABILITIES = "output"  # the head's output, as the probe, the check set and parity.json name it
PROBE_OUTPUTS = (*STAGES[:-1], PROBABILITIES)  # the named outputs of every stage probe, in graph order


def output_of(stage: str) -> str:
    """The probe output's name of ``stage`` (the head's output is the probabilities)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return PROBE_OUTPUTS[STAGES.index(stage)]
