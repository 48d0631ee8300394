"""Choosing, on the device, the file to deploy, and writing the directory it deploys from.

``boards`` (microcontroller budgets), ``choose`` (verify, measure, pick within a budget),
``directory`` (the deploy directory, swapped into place whole). The command is ``runtime.cli.select``.

May import: ``runtime.checks``, ``runtime.bench``, ``runtime.artifacts`` and the ground floor.
"""
