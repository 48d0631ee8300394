"""Tables, the one place they are drawn: plain text for the terminal, Markdown for the reports
and RESULTS.md, HTML for report.html. Each takes a header and rows of cell strings."""

from __future__ import annotations

import html
from collections.abc import Sequence

Row = Sequence[str]


def text_table(header: Row, rows: Sequence[Row]) -> str:
    """Left-aligned columns two spaces apart, trailing blanks trimmed."""
    everything = [tuple(header), *map(tuple, rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in everything)


def markdown_table(header: Row, rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: Row, rows: Sequence[Row], *, escape: bool = True) -> str:
    """``escape=False`` when the cells already hold markup."""
    cell = _escape if escape else str
    head = "".join(f"<th>{_escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)
