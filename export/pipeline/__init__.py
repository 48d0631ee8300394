"""The jobs, each taking its resolved plan (``plan``: config, formats, recipe, budget, strategy and
output directory, checked once before any work): ``convert`` (model.keras -> checked files +
manifest; ``graphs``: the unrolled graph variants it converts from), ``sweep`` (many precision
variants; ``variants``: what a sweep is asked, readable without TensorFlow) and ``run`` (data -> train
-> convert -> parity -> bench -> select -> devices -> report, resumable). Every path of a run directory is
``export.layout``.

May import: ``export.graph``, ``export.formats``, ``export.checks``, ``export.report``, ``export.targets``, ``cllnn_edge``, ``runtime``.
"""
