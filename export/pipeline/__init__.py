"""The jobs: ``convert`` (model.keras -> checked files + manifest; ``graphs``: the unrolled graph variants
it converts from), ``sweep`` (many precision variants),
``run`` (data -> train -> convert -> parity -> bench -> select -> report, resumable) and ``sign``
(``cllnn-export keygen`` / ``sign``). Every path of a run directory is ``export.layout``.

May import: ``export.graph``, ``export.formats``, ``export.checks``, ``export.report``, ``cllnn_edge``, ``runtime``.
"""
