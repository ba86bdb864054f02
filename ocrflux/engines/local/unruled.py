"""Unruled tables: runs of rows whose items line up in the same columns, with no grid drawn.

Only unambiguous layouts qualify: at least three rows in a row of the same region, each with
the same number (three or more) of text items, each column ending on every row before the next
column starts on any row (a clear vertical gutter). Two columns
(label and value) are left as lines: OCRFlux writes forms that way, not as tables.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from ocrflux.engines.local.reading_order import Row

MIN_ROWS = 3
MIN_COLUMNS = 3


def _shape(row: Row) -> int:
    """Number of columns a row could contribute (0 when it cannot be a table row)."""
    if any(not i.is_text for i in row.items):
        return 0
    return len(row.items)


def _aligned(rows: Sequence[Row]) -> bool:
    """Each column ends, on every row, before the next column starts on any row."""
    columns = len(rows[0].items)
    for c in range(columns - 1):
        right = max(r.items[c].box.x1 for r in rows)
        next_left = min(r.items[c + 1].box.x0 for r in rows)
        if right >= next_left:
            return False
    return True


def table_runs(rows: Sequence[Row]) -> list[tuple[int, int]]:
    """(start, end) index ranges of rows that form unruled tables."""
    runs: list[tuple[int, int]] = []
    k = 0
    while k < len(rows):
        width = _shape(rows[k])
        end = k
        if width >= MIN_COLUMNS:
            while (
                end + 1 < len(rows)
                and rows[end + 1].region == rows[k].region
                and _shape(rows[end + 1]) == width
                and _aligned(rows[k : end + 2])
            ):
                end += 1
        if end + 1 - k >= MIN_ROWS:
            runs.append((k, end + 1))
            k = end + 1
        else:
            k += 1
    return runs


def to_html(rows: Sequence[Row]) -> str:
    """The rows as a plain HTML table, one cell per item, text escaped."""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(i.text, quote=False)}</td>" for i in r.items) + "</tr>"
        for r in rows
    )
    return f"<table>{body}</table>"
