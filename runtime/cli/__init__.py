"""``cllnn-bench``: the device's command line. ``main`` dispatches to one module per command: ``bench``
(``cllnn-bench MODEL...``), ``verify`` and ``select``; ``flags`` are the flags they share.

The top of runtime: may import any runtime package; the libraries below hold no argparse and import
nothing of it.
"""
