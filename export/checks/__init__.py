"""Checks of exported files against the trained model, through the device's own runtime.

``reference`` (the Keras model's stage outputs behind the runtime's interface), ``file_checks`` (what a
file must be: builtin kernels, dtypes), ``describe`` (the export-time gate of one file), ``parity``
(``cllnn-export parity``: every file, stage by stage).

May import: ``cllnn_edge``, ``runtime``, ``export.errors``; not the pipeline, report or CLI.
"""
