"""``cllnn-export``: the build host's command line (``main``). The top of export: nothing imports it.
"""
