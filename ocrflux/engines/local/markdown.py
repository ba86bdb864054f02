"""Recognised lines, checkboxes and ruled tables of one page into its Markdown (pure).

Words inside a table's cells become the cells' text; the other words become page items, cut
where a line has a wide gap (a gutter the detector bridged, a checkbox painted out) so each
item is one run of text; checkboxes become `[√]` / `[ ]` items in their place. Items are then
put in reading order and grouped into blocks.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from ocrflux.engines.local.blocks import to_blocks
from ocrflux.engines.local.checkboxes import Checkbox
from ocrflux.engines.local.geometry import Box, TextLine, Word
from ocrflux.engines.local.reading_order import Item, reading_order
from ocrflux.engines.local.tables import Grid, cell_text, to_html

# Checkbox glyphs the recogniser sometimes reads: ticked or crossed -> True, empty -> False.
BOX_GLYPHS = {"☑": True, "☒": True, "✅": True, "☐": False, "□": False}
_WORD_GAP = 1.0  # a gap between words this many text heights wide splits a line into items
_MARK_SIDE = 2.0  # a checkbox is at most this many text heights high (larger: a figure, a frame)

CellKey = tuple[int, int, int]  # grid, row, col


def _cell_of(grids: Sequence[Grid], x: float, y: float) -> CellKey | None:
    for g, grid in enumerate(grids):
        if grid.box.contains_point(x, y):
            for cell in grid.cells:
                if cell.box.contains_point(x, y):
                    return g, cell.row, cell.col
            return None
    return None


def _in_grid(grids: Sequence[Grid], x: float, y: float) -> bool:
    return any(grid.box.contains_point(x, y) for grid in grids)


def _runs(words: list[Word]) -> list[list[Word]]:
    """Words of one line cut at wide gaps."""
    height = statistics.median(w.box.height for w in words)
    runs = [[words[0]]]
    for word in words[1:]:
        if word.box.x0 - runs[-1][-1].box.x1 >= _WORD_GAP * height:
            runs.append([word])
        else:
            runs[-1].append(word)
    return runs


def _split_at_marks(run: list[Word], marks: Sequence[Checkbox]) -> list[list[Word]]:
    """A run cut where a checkbox on the same row sits between its words."""
    run_box = Box.union(w.box for w in run)
    cuts = sorted(
        m.box.cx
        for m in marks
        if run_box.x0 < m.box.cx < run_box.x1 and m.box.overlap_y(run_box) >= 0.5 * m.box.height
    )
    pieces: list[list[Word]] = [[]]
    for word in run:
        while cuts and word.box.cx > cuts[0]:
            cuts.pop(0)
            if pieces[-1]:
                pieces.append([])
        pieces[-1].append(word)
    return [p for p in pieces if p]


def _glyph_marks(words: list[Word]) -> tuple[list[Word], list[Checkbox]]:
    """Box glyphs the recogniser did read (when the pixels did not show a clean square) as
    checkboxes: the glyph takes a square at the left of its word."""
    kept, marks = [], []
    for word in words:
        if word.text[:1] in BOX_GLYPHS:
            b = word.box
            side = min(b.height, b.width)
            marks.append(Checkbox(Box(b.x0, b.y0, b.x0 + side, b.y1), BOX_GLYPHS[word.text[0]]))
            rest = word.text[1:].strip()
            if rest:
                kept.append(Word(rest, Box(min(b.x0 + side, b.x1), b.y0, b.x1, b.y1), True))
        else:
            kept.append(word)
    return kept, marks


def _word_item(words: list[Word]) -> Item:
    first = words[0]
    if first.space_before:  # a run cut from the middle of a line starts afresh
        words = [Word(first.text, first.box, False), *words[1:]]
    return Item(Box.union(w.box for w in words), tuple(words))


def glyph_sized(checkboxes: Sequence[Checkbox], lines: Sequence[TextLine]) -> list[Checkbox]:
    """The checkboxes no taller than text: a framed figure thumbnail or a chart's plot area is
    as square and hollow as a box, but several lines high."""
    heights = [w.box.height for line in lines for w in line.words]
    if not heights:
        return list(checkboxes)
    top = _MARK_SIDE * statistics.median(heights)
    return [c for c in checkboxes if max(c.box.width, c.box.height) <= top]


def page_items(
    lines: Sequence[TextLine], checkboxes: Sequence[Checkbox], grids: Sequence[Grid]
) -> list[Item]:
    """Everything on the page as layout items: text runs, checkbox marks, tables."""
    checkboxes = glyph_sized(checkboxes, lines)
    cell_words: dict[CellKey, list[tuple[int, Word]]] = {}
    free_marks = []
    for k, box in enumerate(checkboxes):
        key = _cell_of(grids, box.box.cx, box.box.cy)
        if key is not None:
            cell_words.setdefault(key, []).append((-1 - k, Word(box.mark, box.box)))
        elif not _in_grid(grids, box.box.cx, box.box.cy):
            free_marks.append(box)
    items = [Item(m.box, mark=m.mark) for m in free_marks]
    for n, line in enumerate(lines):
        outside: list[Word] = []
        words, glyphs = _glyph_marks(list(line.words))
        items += [Item(m.box, mark=m.mark) for m in glyphs]
        for word in words:
            key = _cell_of(grids, word.box.cx, word.box.cy)
            if key is not None:
                cell_words.setdefault(key, []).append((n, word))
            elif not _in_grid(grids, word.box.cx, word.box.cy):
                outside.append(word)
        if outside:
            for run in _runs(outside):
                items += [_word_item(piece) for piece in _split_at_marks(run, free_marks)]
    for g, grid in enumerate(grids):
        texts = {(r, c): cell_text(ws) for (gg, r, c), ws in cell_words.items() if gg == g}
        items.append(Item(grid.box, table=to_html(grid, texts)))
    return items


def compose(
    lines: Sequence[TextLine],
    checkboxes: Sequence[Checkbox],
    grids: Sequence[Grid],
    ink: np.ndarray,
) -> str:
    """The page's Markdown in OCRFlux's natural_text style ("" when nothing was found).

    `ink` is the page's ink mask (`pixels.ink_mask`), for the size of the text."""
    items = page_items(lines, checkboxes, grids)
    return "\n\n".join(to_blocks(reading_order(items, float(ink.shape[1])), ink))
