"""Tables, the one place they are drawn: plain text for the terminal (``cllnn-bench``, ``cllnn-bench
select``, ``cllnn-export``), Markdown for the reports and RESULTS.md, HTML for report.html. Each takes a
header and rows of cell strings. Here, at runtime's top, because a device's commands print tables and
numpy is all this needs; ``export`` draws its tables with these too."""

from __future__ import annotations

import html
from collections.abc import Collection, Sequence

Row = Sequence[str]


def text_table(header: Row, rows: Sequence[Row], *, right: Collection[int] = ()) -> str:
    """Columns two spaces apart, left-aligned except the ``right`` ones (numbers), trailing blanks trimmed."""
    everything = [tuple(header), *map(tuple, rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in everything)


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
