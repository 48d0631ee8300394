"""export: trained CLLNN -> deployable files, and the ``cllnn-export`` command line.

The modules, by role, in pipeline order (one job each; the concept each one
owns lives there and nowhere else):

- graph rewriting: ``unroll`` (the static graph, proven equivalent),
  ``layers`` (the Keras layers it needs);
- formats: ``formats`` (the registry: one declaration per format),
  ``precision`` (precision per stage: recipes, calibration choices),
  ``tflite``, ``aeq`` (recipes through AI Edge Quantizer) and ``onnx`` (the
  converters), ``tflite_edit`` (raw uint8 in, integer out, on a converted
  TFLite graph), ``isolate`` and ``worker`` (a conversion in its own
  process), ``file_checks`` (what a file must be);
- verification: ``reference`` (the trained model's stage outputs behind the
  runtime's interface), ``describe`` (the export-time gate of one file),
  ``parity`` (the CI gate, with the trained model as reference);
- pipeline: ``convert``, ``sweep`` (many precision variants, timed, with
  their Pareto front), ``run`` (the resumable stages), ``layout`` (every
  path of a run directory), ``report``, ``plots``, ``tables``;
- ``sign`` (``cllnn-export keygen`` / ``sign``: the build host's half of ``runtime.artifacts.signing``);
- ``cli`` on top; ``errors`` beside everything.

The limits every check applies are the tolerance table, ``runtime.checks.tolerances``;
the comparator (``runtime.checks.compare``, ``runtime.checks.metrics``), the parity report
and per-file loop (``runtime.checks.parity``) and the check set ``convert`` keeps
(``runtime.artifacts.checkset``) live in ``runtime`` too, so a device's ``cllnn-bench
verify`` runs the same code without TensorFlow.
"""
