"""export: trained CLLNN -> deployable files, and the ``cllnn-export`` command line.

The modules, by role, in pipeline order (one job each; the concept each one
owns lives there and nowhere else):

- graph rewriting: ``unroll`` (the static graph, proven equivalent),
  ``layers`` (the Keras layers it needs);
- formats: ``formats`` (the registry: one declaration per format),
  ``tflite`` and ``onnx`` (the converters), ``isolate`` and ``worker`` (a
  conversion in its own process), ``file_checks`` (what a file must be);
- verification: ``reference`` (the trained model's stage outputs behind the
  runtime's interface), ``compare`` (the one comparator), ``metrics``,
  ``describe`` (the export-time gate of one file), ``parity`` (the CI gate);
- pipeline: ``convert``, ``run`` (the resumable stages), ``layout`` (every
  path of a run directory), ``report``, ``plots``, ``tables``;
- ``cli`` on top; ``errors`` beside everything.

The limits every check applies are the tolerance table, ``runtime.tolerances``.
"""
