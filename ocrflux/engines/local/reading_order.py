"""Reading order: page items into rows, columns read one after the other (recursive XY-cut).

A node of items is split at a vertical gutter when both sides look like columns of running
text (several rows each, wide, one run of text per row, mostly full lines), unless a section
break (a horizontal gap wider than the gutter) comes first; otherwise at its widest horizontal
gap, until each node is one row, read left to right. A form's label/value pairs and a table's
columns therefore stay rows, while two columns of prose are read left column first. Rows are
banded by the middle half of each item's text height (its words' height, not the enclosing
box's), so neighbouring lines whose boxes touch, or tilt by a few degrees, stay apart.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

from ocrflux.engines.local.geometry import Box, Word, join_words

_CORE = 0.25  # half-height of the band an item claims, as a share of its height
_GUTTER = 0.35  # narrowest column gutter, in median text heights (justified columns at
# 1024 px stand ~0.4 line heights apart; prose rows on both sides are checked as well)
_COLUMN_WIDTH = 0.25  # narrowest text column, as a share of the page width
_SECTION = 2.0  # a horizontal gap this many text heights wide is a section break
_FULL_ROW = 0.7  # a row this share of its column's width is a full line of running text


@dataclass(frozen=True, slots=True)
class Item:
    """Something placed on the page: a run of words, a checkbox mark, or a table's HTML."""

    box: Box
    words: tuple[Word, ...] = ()
    mark: str | None = None
    table: str | None = None

    @property
    def text(self) -> str:
        if self.mark is not None:
            return self.mark
        if self.table is not None:
            return self.table
        return join_words(self.words)

    @property
    def text_height(self) -> float:
        """Height of the text itself: its words' median box height, which a tilted line's
        enclosing box exceeds by the drift along its length."""
        if self.words:
            return statistics.median(w.box.height for w in self.words)
        return self.box.height

    @property
    def is_text(self) -> bool:
        return self.mark is None and self.table is None


@dataclass(slots=True)
class Row:
    """Items side by side, left to right, in one region (a column or the full width)."""

    items: list[Item]
    region: int
    box: Box = field(init=False)

    def __post_init__(self) -> None:
        self.items.sort(key=lambda i: i.box.x0)
        self.box = Box.union(i.box for i in self.items)


def _core(item: Item) -> tuple[float, float]:
    if item.table is not None:
        return item.box.y0, item.box.y1
    half = _CORE * item.text_height
    return item.box.cy - half, item.box.cy + half


def bands(items: Sequence[Item]) -> list[list[Item]]:
    """Items grouped into horizontal bands (overlapping cores), top to bottom."""
    ordered = sorted(items, key=lambda i: _core(i)[0])
    out: list[list[Item]] = []
    bottom = float("-inf")
    for item in ordered:
        top, end = _core(item)
        if out and top <= bottom:
            out[-1].append(item)
            bottom = max(bottom, end)
        else:
            out.append([item])
            bottom = end
    return out


def _gutters(items: Sequence[Item]) -> list[tuple[float, float]]:
    spans = sorted((i.box.x0, i.box.x1) for i in items)
    gaps = []
    right = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 > right:
            gaps.append((right, x0))
        right = max(right, x1)
    return gaps


def _is_text_column(items: Sequence[Item], page_width: float) -> bool:
    side = Box.union(i.box for i in items)
    if side.width < _COLUMN_WIDTH * page_width:
        return False
    rows = bands(items)
    if len(rows) < 2:
        return False
    # Prose: one run of text per row (a row cut into several runs is a table or a form),
    # mostly running the full width of the column.
    single = sum(1 for band in rows if sum(1 for i in band if i.is_text) <= 1)
    full = sum(1 for band in rows if Box.union(i.box for i in band).width >= _FULL_ROW * side.width)
    return single >= 0.75 * len(rows) and full >= len(rows) / 2


def _column_split(
    items: Sequence[Item], text_height: float, page_width: float
) -> tuple[list[Item], list[Item], float] | None:
    """(left, right, gutter width) at the widest gutter between two columns of text."""
    gaps = [g for g in _gutters(items) if g[1] - g[0] >= _GUTTER * text_height]
    for x_left, x_right in sorted(gaps, key=lambda g: g[0] - g[1]):  # widest first
        left = [i for i in items if i.box.x1 <= x_left]
        right = [i for i in items if i.box.x0 >= x_right]
        if _is_text_column(left, page_width) and _is_text_column(right, page_width):
            return left, right, x_right - x_left
    return None


def reading_order(items: Sequence[Item], page_width: float) -> list[Row]:
    """The page's rows in reading order; each row knows its region (column) number."""
    if not items:
        return []
    heights = [i.text_height for i in items if i.is_text] or [i.box.height for i in items]
    text_height = statistics.median(heights)
    regions = count(1)
    rows: list[Row] = []

    def cut(node: list[Item], region: int) -> None:
        node_bands = bands(node)
        if len(node_bands) == 1:
            rows.append(Row(list(node), region))
            return
        gaps = [
            min(_core(i)[0] for i in node_bands[k + 1]) - max(_core(i)[1] for i in node_bands[k])
            for k in range(len(node_bands) - 1)
        ]
        at = max(range(len(gaps)), key=gaps.__getitem__)
        split = _column_split(node, text_height, page_width)
        # A section break (wider than the gutter and than paragraph gaps) is cut first, so
        # columns above it do not run on into whatever comes below.
        if split is None or gaps[at] >= max(_SECTION * text_height, split[2]):
            cut([i for band in node_bands[: at + 1] for i in band], region)
            cut([i for band in node_bands[at + 1 :] for i in band], region)
        else:
            cut(split[0], next(regions))
            cut(split[1], next(regions))

    cut(list(items), 0)
    return rows
