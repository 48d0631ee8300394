"""The run's report: ``build`` (report.json, report.md, report.html), ``plots`` (PNG figures,
matplotlib headless), ``tables`` (text and Markdown tables), ``mcu_report`` (the microcontroller section).

May import: ``export.layout``, ``export.formats``, ``runtime``; the pipeline calls it, not the reverse.
"""
