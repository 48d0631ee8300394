"""Measuring a file where it runs: latency percentiles, throughput, peak memory.

``latency`` times a loaded model through the device runtime and compares against a baseline.

May import: ``runtime.loader``, ``runtime.artifacts``, ``runtime.backends`` and the ground floor.
"""
