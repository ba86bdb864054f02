"""The local engine's answer to the cross-page questions, without a model (pure).

OCRFlux-3B decides which elements continue across a page break and merges split tables; the
local engine has no model, so it merges only what the page text itself shows:

- a paragraph cut mid-sentence: the last element of a page is body text that does not end a
  sentence (no `.`, `!`, `?`, `:`, `;`, `。` ... at its end), and the first element of the next
  page is body text that starts in lower case (or, after Chinese text, with a Chinese
  character): the two are one paragraph;
- a table split by the break: the last element of a page and the first of the next are both
  tables with the same number of columns; the second's rows are appended to the first, and a
  first row that repeats the first table's header is dropped.

Headings, list items and checkbox lines never merge. Anything less certain stays as it is: a
wrong merge would change the text, a missed one only leaves a paragraph split in two.
"""

from __future__ import annotations

import re

from ocrflux.format.merge import is_table
from ocrflux.format.page import table_rows

# What can end a sentence, and closing quotes/brackets that may follow it.
_SENTENCE_END = frozenset(".!?:;。！？：；…")
_CLOSERS = "\"'”’)]）」』"
_LIST_ITEM = re.compile(r"\A(?:#|[-*+] |\[[√ ]\]|\d{1,3}[.)] )")
_ROW = re.compile(r"<tr\b[^>]*>.*?</tr>", re.IGNORECASE | re.DOTALL)


def _cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def _body_text(element: str) -> bool:
    return bool(element) and not is_table(element) and not _LIST_ITEM.match(element)


def paragraph_continues(last: str, first: str) -> bool:
    """True when `first` (top of a page) carries on the sentence `last` (bottom of the page
    before) leaves unfinished."""
    last, first = last.strip(), first.strip()
    if not (_body_text(last) and _body_text(first)):
        return False
    end = last.rstrip(_CLOSERS)[-1:] or last[-1]
    if end in _SENTENCE_END:
        return False
    start = first[0]
    if start.isalpha() and start.islower():
        return True
    return (_cjk(end) or end in "，、") and _cjk(start)


def column_count(table: str) -> int:
    """Columns of an HTML table: its widest row (0 when it has no rows)."""
    return max((len(row) for row in table_rows(table)), default=0)


def tables_continue(last: str, first: str) -> bool:
    """True when two tables on either side of a page break have the same number of columns."""
    if not (is_table(last) and is_table(first)):
        return False
    columns = column_count(last)
    return columns > 0 and columns == column_count(first)


def _cells(row: str) -> list[list[str]]:
    return table_rows(f"<table>{row}</table>")


def merge_tables(first: str, second: str) -> str | None:
    """One table: `first` with the rows of `second` appended (a repeated header row dropped);
    None when they are not two tables of the same width."""
    if not tables_continue(first, second):
        return None
    rows = _ROW.findall(second)
    head = _ROW.search(first)
    if rows and head is not None and _cells(rows[0]) == _cells(head.group(0)):
        rows = rows[1:]
    return first[: -len("</table>")] + "".join(rows) + "</table>"


def continuations(previous: list[str], following: list[str]) -> list[tuple[int, int]]:
    """The merge-detect answer: at most the pair (last of `previous`, first of `following`)."""
    if not previous or not following:
        return []
    last, first = previous[-1], following[0]
    if paragraph_continues(last, first) or tables_continue(last, first):
        return [(len(previous) - 1, 0)]
    return []
