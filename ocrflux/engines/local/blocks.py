"""Rows in reading order into OCRFlux-style blocks: headings, paragraphs, checkbox lists, tables.

Blocks are separated by blank lines, as in OCRFlux's `natural_text`. A heading is a row whose
text is clearly taller than the page's body text (`# `, H1 only, as OCRFlux-3B writes every
heading). Rows of one region follow each other in a block while the gap between them is a
line gap; a row joins the previous line when that line ran to the column's edge (wrapped),
otherwise it starts a new line. Checkbox rows stay one per line. Rows lined up in three or
more clear columns become an HTML table (`unruled`).
"""

from __future__ import annotations

import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ocrflux.engines.local import unruled
from ocrflux.engines.local.reading_order import Row

_HEADING = 1.3  # text size, relative to body text, from which a short row is a heading
_HEADING_MAX_CHARS = 150
_PARAGRAPH_GAP = 0.6  # vertical gap, in body line heights, that starts a new block
_DENSE = 0.5  # share of the row's peak ink that marks its dense band
_CJK_SCALE = 1.7  # CJK characters' dense band / Latin x-height, for one font size
_X_PER_CAP = 0.75  # x-height / cap height, for rows with no lowercase letters
_FOOTER = 0.07  # bottom share of the page where running footers and page numbers sit
_LINE_ASPECT = 1.5  # a horizontal line of text is at least this many times wider than high


def _is_cjk_text(text: str) -> bool:
    wide = sum(1 for ch in text if _is_cjk(ch))
    return wide > 0.5 * sum(1 for ch in text if not ch.isspace())


def text_size(row: Row, ink: np.ndarray) -> float | None:
    """How large a row's text is: the height of its densest band of ink, independent of
    detector boxes. Measured on the words with lowercase letters when there are any (their
    band is the x-height; digits beside them would stretch it to cap height); otherwise cap
    height or CJK characters' body, both scaled to x-height units."""
    words = [w for i in row.items if i.is_text for w in i.words if w.text.strip()]
    if not words:
        return None
    lower = [w for w in words if any(ch.islower() for ch in w.text)]
    chosen = lower or words
    y0, y1 = max(0, int(row.box.y0)), min(ink.shape[0], int(row.box.y1) + 1)
    profile = np.zeros(max(0, y1 - y0), dtype=np.float64)
    for word in chosen:
        x0, x1 = max(0, int(word.box.x0)), int(word.box.x1) + 1
        profile += (ink[y0:y1, x0:x1] > 0).sum(axis=1)
    if profile.size == 0 or profile.max() <= 0:
        return None
    dense = np.flatnonzero(profile >= _DENSE * profile.max())
    size = float(dense[-1] - dense[0] + 1)
    if lower:
        return size
    return size / _CJK_SCALE if _is_cjk_text("".join(w.text for w in words)) else size * _X_PER_CAP


def body_size(sizes: Sequence[tuple[float, int]]) -> float:
    """The size of the most common text: median of (size, characters) weighted by characters."""
    weighted = sorted((size, n) for size, n in sizes if n > 0)
    if not weighted:
        return 1.0
    half, seen = sum(n for _, n in weighted) / 2, 0
    for size, n in weighted:
        seen += n
        if seen >= half:
            return size
    return weighted[-1][0]


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def join_lines(previous: str, following: str) -> str:
    """Join a wrapped line to the next: no space between CJK, de-hyphenate Latin words."""
    if not previous or not following:
        return previous + following
    if _is_cjk(previous[-1]) and _is_cjk(following[0]):
        return previous + following
    if (
        len(previous) > 1
        and previous[-1] == "-"
        and previous[-2].isalpha()
        and following[0].islower()
    ):
        return previous[:-1] + following
    return f"{previous} {following}"


def row_text(row: Row) -> str:
    return " ".join(t for t in (i.text for i in row.items) if t)


@dataclass(slots=True)
class _Block:
    kind: str  # "heading", "text", "checkbox", "table"
    region: int
    lines: list[str]
    last: Row

    def render(self) -> str:
        if self.kind == "heading":
            return "# " + self.lines[0]
        return "\n".join(self.lines)


def _looks_like_heading(row: Row, page_height: float) -> bool:
    """Words on one horizontal line, mostly letters, above the footer band: chart ticks,
    tilted axis labels, rotated margin stamps and page footers measure large too."""
    text = row_text(row)
    letters = sum(1 for ch in text if ch.isalpha())
    if letters < 2 or letters < 0.5 * sum(1 for ch in text if not ch.isspace()):
        return False
    if any(i.is_text and i.box.width < _LINE_ASPECT * i.box.height for i in row.items):
        return False
    return row.box.y0 < (1 - _FOOTER) * page_height


def _kind(row: Row, size: float | None, body: float, page_height: float) -> str:
    if any(i.table is not None for i in row.items):
        return "table"
    if row.items[0].mark is not None:
        return "checkbox"
    if (
        size is not None
        and size >= _HEADING * body
        and len(row_text(row)) <= _HEADING_MAX_CHARS
        and _looks_like_heading(row, page_height)
    ):
        return "heading"
    return "text"


def _tails(rows: Sequence[Row], kinds: list[str], line: float) -> None:
    """A "heading" right under a line of running text of its region, with no paragraph gap,
    is that paragraph's last line (a sentence tail whose capitals and digits measure large)."""
    for k in range(1, len(rows)):
        row, above = rows[k], rows[k - 1]
        if (
            kinds[k] == "heading"
            and kinds[k - 1] == "text"
            and above.region == row.region
            and row.box.y0 - above.box.y1 <= _PARAGRAPH_GAP * line
            and row.box.overlap_x(above.box) > 0
        ):
            kinds[k] = "text"


def _wrapped(previous: Row, following: Row, right_edge: float, line: float) -> bool:
    """Whether `previous` ran to its column's edge, i.e. `following` continues its line."""
    first = following.items[0].box.width
    first_words = following.items[0].words
    if first_words:
        first = first_words[0].box.width
    return previous.box.x1 + first + 0.5 * line >= right_edge


def line_height(rows: Sequence[Row]) -> float:
    """The median height of the text items' boxes (the detector's line height)."""
    heights = [i.text_height for row in rows for i in row.items if i.is_text]
    return statistics.median(heights) if heights else 1.0


def to_blocks(rows: Sequence[Row], ink: np.ndarray) -> list[str]:
    """The page's Markdown blocks, in reading order; ink is the page's ink mask."""
    sizes = [text_size(row, ink) for row in rows]
    body = body_size([(s, len(row_text(r))) for s, r in zip(sizes, rows, strict=True) if s])
    line = line_height(rows)
    page_height = float(ink.shape[0])
    kinds = [_kind(row, size, body, page_height) for row, size in zip(rows, sizes, strict=True)]
    _tails(rows, kinds, line)
    right_edges: dict[int, float] = {}
    for row, kind in zip(rows, kinds, strict=True):
        if kind == "text":
            right_edges[row.region] = max(right_edges.get(row.region, 0.0), row.box.x1)
    blocks: list[_Block] = []
    runs = {start: end for start, end in unruled.table_runs(rows)}
    skip_to = 0
    for k, (row, kind) in enumerate(zip(rows, kinds, strict=True)):
        if k < skip_to:
            continue
        if k in runs:
            blocks.append(_Block("table", row.region, [unruled.to_html(rows[k : runs[k]])], row))
            skip_to = runs[k]
            continue
        if kind == "table":
            for item in row.items:
                text = item.text
                blocks.append(_Block("table" if item.table else "text", row.region, [text], row))
            continue
        text = row_text(row)
        current = blocks[-1] if blocks else None
        if (
            current is not None
            and current.kind == kind
            and current.region == row.region
            and row.box.y0 - current.last.box.y1 <= _PARAGRAPH_GAP * line
            and row.box.overlap_x(current.last.box) > 0
        ):
            continues = kind == "heading" or (
                kind == "text" and _wrapped(current.last, row, right_edges[row.region], line)
            )
            if continues:
                current.lines[-1] = join_lines(current.lines[-1], text)
            else:
                current.lines.append(text)
            current.last = row
            continue
        blocks.append(_Block(kind, row.region, [text], row))
    return [b.render() for b in blocks if any(text.strip() for text in b.lines)]
