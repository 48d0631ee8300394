"""export: trained CLLNN -> deployable files, and the ``cllnn-export`` command line.

Sub-packages by role, each importing only those listed before it (``tests/test_code_shape.py``
holds this; each one's ``__init__`` says what lives there):

- ``export.graph``: the static graph (``unroll``, ``layers``), the stage names (``stages``) and the
  trained model's reference runner (``reference``);
- ``export.formats``: the registry (one declaration per format), precision per stage, the converters,
  the file checks, and each conversion in its own process (``isolate``, ``worker``);
- ``export.checks``: the export-time gate of one file (``describe``) and ``parity``;
- ``export.report``: report.json / .md / .html, its plots and tables, the sweep's table;
- ``export.pipeline``: ``convert``, ``sweep``, ``run``, ``sign``;
- ``export.cli``: ``cllnn-export`` on top.

Beside them all: ``errors``, ``layout`` (every path of a run directory) and ``lifeline`` (child
processes that die with their parent: host-only, so not in ``runtime``).

The limits every check applies are the tolerance table, ``runtime.checks.tolerances``;
the comparator (``runtime.checks.compare``, ``runtime.checks.metrics``), the parity report
and per-file loop (``runtime.checks.parity``) and the check set ``convert`` keeps
(``runtime.artifacts.checkset``) live in ``runtime`` too, so a device's ``cllnn-bench
verify`` runs the same code without TensorFlow.
"""
