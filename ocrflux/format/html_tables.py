"""OCRFlux's cell-matrix tables: read HTML tables from model output, convert matrices.

A table in OCRFlux-3B's page text is a *cell matrix*: an HTML table with one `<td>` per grid
cell, where a cell covered by a span holds a marker instead of text:

* `<l>`  - covered by the colspan of the cell to its left,
* `<t>`  - covered by the rowspan of the cell above,
* `<lt>` - covered by both (inside a cell that spans rows and columns).

`convert_tables` turns every such table of a text into an ordinary HTML table with
`rowspan`/`colspan`. Model output is untrusted and client-controlled (it is what was printed
on the page): everything here is pure, linear in the text's length, and never raises on it; a
malformed matrix falls back to its text with the markers removed.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = [
    "TableFormatError",
    "convert_table",
    "convert_tables",
    "html_to_matrix",
    "matrix_to_html",
    "table_rows",
    "table_spans",
]


class TableFormatError(ValueError):
    """A table that is not a consistent cell matrix (or HTML grid)."""


@dataclass
class _Cell:
    tag: str  # "td" or "th"
    attrs: dict[str, str | None]
    parts: list[str]

    @property
    def content(self) -> str:
        return "".join(self.parts).strip()

    def span(self, name: str) -> int:
        raw = self.attrs.get(name)
        try:
            return min(max(1, int(raw or 1)), _MAX_SPAN[name])
        except ValueError:  # browsers read a garbled span as 1; so do we
            return 1


class _TableReader(HTMLParser):
    """Collects the rows of the first top-level table, keeping each cell's inner HTML verbatim."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.rows: list[list[_Cell]] = []
        self._table_depth = 0  # 1 while inside the outer table
        self._done = False
        self._row: list[_Cell] | None = None
        self._cell: _Cell | None = None
        self._nested = 0  # tables nested inside the current cell

    def _close_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append(self._cell)
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._row is not None:
            self.rows.append(self._row)
        self._row = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if self._cell is not None:
            if tag == "table":
                self._nested += 1
            if self._nested or tag not in ("td", "th", "tr"):
                self._cell.parts.append(self.get_starttag_text() or "")
                return
        if self._table_depth == 0:
            if tag == "table":
                self._table_depth = 1
            return
        if tag == "tr":
            self._close_row()
            self._row = []
        elif tag in ("td", "th"):
            self._close_cell()
            if self._row is None:  # a cell outside any <tr>: give it a row of its own
                self._row = []
            self._cell = _Cell(tag, dict(attrs), [])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._cell is not None and not self._done:
            self._cell.parts.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if self._done or self._table_depth == 0:
            return
        if self._cell is not None:
            if self._nested:
                if tag == "table":
                    self._nested -= 1
                self._cell.parts.append(f"</{tag}>")
                return
            if tag in ("td", "th"):
                self._close_cell()
                return
            if tag not in ("tr", "table", "tbody", "thead", "tfoot"):
                self._cell.parts.append(f"</{tag}>")
                return
        if tag == "tr":
            self._close_row()
        elif tag == "table":
            self._close_row()
            self._done = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._done:
            self._cell.parts.append(data)

    def close(self) -> None:
        super().close()
        if not self._done:  # an unterminated table still yields the rows seen so far
            self._close_row()


# Private-use code points: one absent from a table stands in for a character the parser must
# not see (model output may hold any of them, so the search has room and a way out).
_PRIVATE_USE = (range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))
# A `<` that does not open a complete tag (one closed before the next `<`): a comment,
# declaration, processing instruction, unclosed tag, or plain text. Python's HTMLParser scans
# to the end of the text from each unclosed one (CPython gh-135462: 30,000 took seconds) and
# spends ~4 us on each stray one. Every lookahead stops at the next `<`: linear.
_NOT_A_TAG = re.compile(r"""<(?![A-Za-z/](?:[^<>"']|"[^"<]*"|'[^'<]*')*>)""")
# Browsers' own limits: a larger span is read as this much (and cannot blow up a grid).
_MAX_SPAN = {"colspan": 1000, "rowspan": 65534}


def _stand_ins(text: str, count: int) -> list[str]:
    """`count` private-use characters absent from text (TableFormatError if there are none)."""
    present = set(text)
    found: list[str] = []
    for block in _PRIVATE_USE:
        for code in block:
            if chr(code) not in present:
                found.append(chr(code))
                if len(found) == count:
                    return found
    raise TableFormatError("no free private-use character to parse this table")


def _read_rows(html: str) -> list[list[_Cell]]:
    # HTMLParser reads the `&D` of "R&D" as an entity reference and cannot say whether a `;`
    # followed, so "R&D" came back as "R&D;". It never sees an ampersand here: every cell
    # keeps its source text byte for byte, entities included. Nor does it see a `<` it would
    # rescan the rest of the text from (see _NOT_A_TAG): that one is text, and stays text.
    amp, lt = _stand_ins(html, 2) if "&" in html or "<" in html else ("", "")
    reader = _TableReader()
    reader.feed(_NOT_A_TAG.sub(lt, html.replace("&", amp)) if amp else html)
    reader.close()
    if not reader.rows:
        raise TableFormatError("no table rows")
    if amp:
        for row in reader.rows:
            for cell in row:
                cell.parts = [part.replace(amp, "&").replace(lt, "<") for part in cell.parts]
                cell.attrs = {
                    name: None if value is None else htmllib.unescape(value.replace(amp, "&"))
                    for name, value in cell.attrs.items()
                }
    return reader.rows


_MARKER = re.compile(r"\A<(lt|l|t)>(?:\s*</\1>)?\Z", re.IGNORECASE)
_MARKER_TAGS = re.compile(r"</?(?:lt|l|t)>", re.IGNORECASE)


def _marker(cell: _Cell) -> str | None:
    found = _MARKER.match(cell.content)
    return found.group(1).lower() if found else None


def _cell_html(tag: str, content: str, rowspan: int = 1, colspan: int = 1) -> str:
    attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (
        f' colspan="{colspan}"' if colspan > 1 else ""
    )
    return f"<{tag}{attrs}>{content}</{tag}>"


def matrix_to_html(table: str) -> str:
    """Turn a cell-matrix table into HTML with rowspan/colspan; TableFormatError if malformed."""
    rows = _read_rows(table)
    # An empty <tr></tr> has no cells to count: it stays an empty row, and a rowspan cannot
    # run through it (the toolkit converts such matrices too, when the empty row leads).
    ncols = next((len(row) for row in rows if row), 0)
    if any(row and len(row) != ncols for row in rows):
        raise TableFormatError("rows of a matrix must have equal length")
    if any(cell.span("rowspan") > 1 or cell.span("colspan") > 1 for row in rows for cell in row):
        raise TableFormatError("already an HTML table with spans, not a matrix")
    marks = [[_marker(cell) for cell in row] if row else [None] * ncols for row in rows]
    covered = [[not row] * ncols for row in rows]
    out = ["<table>"]
    for r, row in enumerate(rows):
        out.append("<tr>")
        for c, cell in enumerate(row):
            if covered[r][c]:
                continue
            if marks[r][c] is not None:
                raise TableFormatError(f"marker <{marks[r][c]}> at ({r},{c}) covers no cell")
            rowspan = 1
            while r + rowspan < len(rows) and marks[r + rowspan][c] == "t":
                rowspan += 1
            colspan = 1
            while c + colspan < ncols and marks[r][c + colspan] == "l":
                colspan += 1
            for rr in range(r, r + rowspan):
                for cc in range(c, c + colspan):
                    inner = rr > r and cc > c
                    if inner and marks[rr][cc] != "lt":
                        raise TableFormatError(f"expected <lt> at ({rr},{cc})")
                    covered[rr][cc] = True
            out.append(_cell_html(cell.tag, cell.content, rowspan, colspan))
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def html_to_matrix(html: str) -> str:
    """Turn an HTML table with rowspan/colspan into OCRFlux's cell matrix (inverse of
    `matrix_to_html`); TableFormatError if the spans overlap or leave holes."""
    rows = _read_rows(html)
    grid: dict[tuple[int, int], str] = {}
    anchors: dict[tuple[int, int], _Cell] = {}
    for r, row in enumerate(rows):
        c = 0
        for cell in row:
            while (r, c) in grid:
                c += 1
            rowspan, colspan = cell.span("rowspan"), cell.span("colspan")
            if r + rowspan > len(rows):
                raise TableFormatError(f"rowspan at ({r},{c}) runs past the last row")
            for rr in range(r, r + rowspan):
                for cc in range(c, c + colspan):
                    if (rr, cc) in grid:
                        raise TableFormatError(f"cells overlap at ({rr},{cc})")
                    grid[(rr, cc)] = "lt" if rr > r and cc > c else "t" if rr > r else "l"
            grid[(r, c)] = ""
            anchors[(r, c)] = cell
            c += colspan
    ncols = 1 + max(c for _, c in grid)
    out = ["<table>"]
    for r in range(len(rows)):
        out.append("<tr>")
        for c in range(ncols):
            if (r, c) not in grid:
                raise TableFormatError(f"no cell covers ({r},{c})")
            anchor = anchors.get((r, c))
            if anchor is None:
                out.append(f"<td><{grid[(r, c)]}></td>")
            else:
                out.append(_cell_html(anchor.tag, anchor.content))
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def convert_table(table: str) -> str:
    """`matrix_to_html`, or on any malformation the table text with its markers removed.

    Markers left inside cells (a nested table) are removed as well: a cell marker is never
    content."""
    try:
        return _MARKER_TAGS.sub("", matrix_to_html(table))
    except TableFormatError:
        return _MARKER_TAGS.sub("", table)


_TABLE_TAG_START = re.compile(r"<(/?)table\b", re.IGNORECASE)


def _table_tags(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, closing) of every `<table ...>` / `</table ...>` tag, left to right.

    What the regex `<(/?)table\b[^>]*>` finds, in linear time: from each `<table` without a
    `>` after it, that regex scans to the end of the text (60,000 characters of `<table`:
    seconds). Once no `>` follows, no later tag can end either.
    """
    pos = 0
    while found := _TABLE_TAG_START.search(text, pos):
        end = text.find(">", found.end())
        if end < 0:
            return
        yield found.start(), end + 1, bool(found.group(1))
        pos = end + 1


def table_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost `<table>...</table>` in text; nested tables stay inside
    their cell, and an unterminated table runs to the end of the text."""
    spans: list[tuple[int, int]] = []
    depth = start = 0
    for tag_start, tag_end, closing in _table_tags(text):
        if not closing:
            if depth == 0:
                start = tag_start
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                spans.append((start, tag_end))
    if depth:
        spans.append((start, len(text)))
    return spans


def table_rows(html: str) -> list[list[str]]:
    """The inner HTML of each cell, row by row, of the first table in html ([] if none)."""
    try:
        return [[cell.content for cell in row] for row in _read_rows(html)]
    except TableFormatError:
        return []


def convert_tables(text: str) -> str:
    """Every cell-matrix table in a page's text converted (see `convert_table`)."""
    out: list[str] = []
    pos = 0
    # Cell markers belong to tables only; stray ones (a cut-off table) are removed like the
    # markers of a malformed table.
    for start, end in table_spans(text):
        out += [_MARKER_TAGS.sub("", text[pos:start]), convert_table(text[start:end])]
        pos = end
    out.append(_MARKER_TAGS.sub("", text[pos:]))
    return "".join(out)
