"""How close a file is to the trained model, and whether that is close enough.

``tolerances`` (the table of limits, per precision), ``metrics`` (the distance measures),
``compare`` (one comparator under one tolerance row), ``parity`` (the result objects and the per-file
loop, shared by ``cllnn-export parity`` and the device), ``verify`` (``cllnn-bench verify``'s library:
every listed file against the check set).

May import: ``runtime.artifacts``, ``runtime.backends`` (through ``runtime.loader``), ``runtime.bench``,
and the ground floor (``errors``, ``atomic``, ``outputs``, ``machine``).
"""
