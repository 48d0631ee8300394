"""The run's report: ``build`` (report.json, report.md, report.html), ``page`` (the HTML page),
``plots`` (PNG figures, matplotlib headless, labels placed clear of each other), ``mcu_report`` (the
microcontroller section), ``sweep_table`` (the sweep's rows) and ``devices`` (the devices' table and
sections). Its tables are drawn by ``runtime.tables``, the one table drawer.

May import: ``export.layout``, ``export.formats``, ``export.targets.results`` (a device's results, read),
``runtime``; the pipeline calls it, not the reverse.
"""
