"""`table_format: "markdown"`: span-free HTML tables become pipe tables; the rest stay HTML.

Pure text work (the format layer). A pipe table cannot express a merged cell or a nested
table, so such tables are kept as HTML rather than flattened into something that reads wrong.
"""

from __future__ import annotations

import re

from ocrflux.format.html_tables import TableFormatError, html_to_matrix, table_rows, table_spans

_MARKER = re.compile(r"<(?:lt|l|t)>")
_NESTED = re.compile(r"<table\b", re.IGNORECASE)
_BREAKS = re.compile(r"\s*\n\s*")


def _pipe_cell(cell_html: str) -> str:
    # A pipe would end the cell and a line break the row: escape one, turn the other into <br>.
    return _BREAKS.sub("<br>", cell_html.strip()).replace("|", "\\|")


def pipe_table(table_html: str) -> str | None:
    """The table as a Markdown pipe table (first row as header), or None if it has spans."""
    rows = table_rows(table_html)
    if not rows or any(_NESTED.search(cell) for row in rows for cell in row):
        return None
    try:
        matrix = html_to_matrix(table_html)
    except TableFormatError:
        return None
    if _MARKER.search(matrix):
        return None
    width = max(len(row) for row in rows)
    lines = []
    for number, row in enumerate(rows):
        cells = [_pipe_cell(cell) for cell in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if number == 0:
            lines.append("|" + "---|" * width)
    return "\n".join(lines)


def tables_to_markdown(text: str) -> str:
    """Every span-free table in `text` as a pipe table; tables with spans are left as HTML."""
    out: list[str] = []
    position = 0
    for start, end in table_spans(text):
        out.append(text[position:start])
        table = text[start:end]
        out.append(pipe_table(table) or table)
        position = end
    out.append(text[position:])
    return "".join(out)
