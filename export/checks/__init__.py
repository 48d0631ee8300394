"""Checks of exported files against the trained model, through the device's own runtime.

``describe`` (the export-time gate of one file) and ``parity`` (``cllnn-export parity``: every file,
stage by stage), both against ``export.graph.reference``.

May import: ``export.graph``, ``export.formats``, ``cllnn_edge``, ``runtime``, ``export.errors``; not the
pipeline, report or CLI.
"""
