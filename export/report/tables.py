"""The report's tables: drawn by ``runtime.tables``, the one table drawer (a device's commands print
tables too, and runtime imports nothing of export). Named here for export's modules."""

from runtime.tables import html_table, markdown_table, text_table

__all__ = ["html_table", "markdown_table", "text_table"]
