"""The jobs: ``convert`` (model.keras -> checked files + manifest), ``sweep`` (many precision variants),
``run`` (data -> train -> convert -> parity -> bench -> select -> report, resumable), ``layout`` (every
path of a run directory) and ``sign`` (``cllnn-export keygen`` / ``sign``).

May import: ``export.graph``, ``export.formats``, ``export.checks``, ``export.report``, ``cllnn_edge``, ``runtime``.
"""
