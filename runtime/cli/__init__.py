"""``cllnn-bench``: the device's command line (``main``) and the flags its commands share (``flags``).

The top of runtime: may import any runtime package; nothing in runtime imports it.
"""
