"""A hypothesis strategy both table suites draw from: a grid tiled by random rectangles."""

from __future__ import annotations

from hypothesis import strategies as st

Span = tuple[int, int, int, int]  # a cell's anchor: row, column, rowspan, colspan


@st.composite
def tilings(draw: st.DrawFn, max_side: int) -> tuple[int, int, list[Span]]:
    """(rows, columns, spans in reading order): every grid cell lies in exactly one span."""
    nrows, ncols = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    taken: set[tuple[int, int]] = set()
    spans: list[Span] = []
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) in taken:
                continue
            width = 1
            while c + width < ncols and (r, c + width) not in taken:
                width += 1
            colspan = draw(st.integers(1, width))
            height = 1
            while r + height < nrows and all(
                (r + height, cc) not in taken for cc in range(c, c + colspan)
            ):
                height += 1
            rowspan = draw(st.integers(1, height))
            taken.update((rr, cc) for rr in range(r, r + rowspan) for cc in range(c, c + colspan))
            spans.append((r, c, rowspan, colspan))
    return nrows, ncols, spans
