"""Ruled tables from pixels: grid lines found with OpenCV, merged cells from missing borders.

Long horizontal and vertical strokes are kept by morphological opening; each connected set of
them with at least two rules each way is a table. Rule positions give the base grid; a border
missing between two base cells (checked on the ink itself, so short segments count) merges
them into one cell with rowspan/colspan, when the merged cells form a rectangle.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocrflux.engines.local.geometry import Box, Word
from ocrflux.engines.local.pixels import ink_mask

_BORDER_COVERAGE = 0.8  # share of a border segment that must be inked for the border to exist


@dataclass(frozen=True, slots=True)
class Cell:
    row: int
    col: int
    rowspan: int
    colspan: int
    box: Box


@dataclass(frozen=True, slots=True)
class Grid:
    """A ruled table: its outline and its cells, row by row."""

    box: Box
    rows: int
    cols: int
    cells: tuple[Cell, ...]


def _segments(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, w, h) of the strokes in a mask."""
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [tuple(int(v) for v in stats[k][:4]) for k in range(1, count)]  # type: ignore[misc]


def _cluster(values: list[float], tolerance: float) -> list[float]:
    """Positions closer than tolerance merged into their mean."""
    groups: list[list[float]] = []
    for v in sorted(values):
        if groups and v - groups[-1][-1] <= tolerance:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [sum(g) / len(g) for g in groups]


def _near(value: float, positions: list[float], tolerance: float) -> bool:
    return any(abs(value - p) <= tolerance for p in positions)


def _covered(
    ink: np.ndarray, horizontal: bool, at: float, start: float, end: float, tol: int
) -> bool:
    """Whether a border line exists at `at` between start and end (along the other axis)."""
    a0, a1 = max(0, round(at) - tol), round(at) + tol + 1
    margin = max(2, round(0.15 * (end - start)))
    s0, s1 = round(start) + margin, round(end) - margin
    if s1 <= s0:
        return True
    strip = ink[a0:a1, s0:s1] if horizontal else ink[s0:s1, a0:a1]
    along = strip.any(axis=0) if horizontal else strip.any(axis=1)
    return along.size > 0 and float(along.mean()) >= _BORDER_COVERAGE


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _cells(ink: np.ndarray, ys: list[float], xs: list[float], tol: int) -> tuple[Cell, ...]:
    rows, cols = len(ys) - 1, len(xs) - 1
    parent = list(range(rows * cols))
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols and not _covered(ink, False, xs[c + 1], ys[r], ys[r + 1], tol):
                parent[_find(parent, r * cols + c + 1)] = _find(parent, r * cols + c)
            if r + 1 < rows and not _covered(ink, True, ys[r + 1], xs[c], xs[c + 1], tol):
                parent[_find(parent, (r + 1) * cols + c)] = _find(parent, r * cols + c)
    groups: dict[int, list[tuple[int, int]]] = {}
    for r in range(rows):
        for c in range(cols):
            groups.setdefault(_find(parent, r * cols + c), []).append((r, c))
    cells = []
    for members in groups.values():
        r0, r1 = min(r for r, _ in members), max(r for r, _ in members)
        c0, c1 = min(c for _, c in members), max(c for _, c in members)
        if len(members) == (r1 - r0 + 1) * (c1 - c0 + 1):
            spans = [(r0, c0, r1 - r0 + 1, c1 - c0 + 1)]
        else:  # not a rectangle: a drawing, not a merged cell; keep the base cells
            spans = [(r, c, 1, 1) for r, c in members]
        for r, c, rs, cs in spans:
            box = Box(xs[c], ys[r], xs[c + cs], ys[r + rs])
            cells.append(Cell(r, c, rs, cs, box))
    cells.sort(key=lambda cell: (cell.row, cell.col))
    return tuple(cells)


def find_grids(gray: np.ndarray) -> list[Grid]:
    """Every ruled table on a level grayscale page, top to bottom.

    Horizontal rules are strokes too long to be letters; a vertical stroke is a rule only when
    it runs from one horizontal rule to another, so tall letters inside cells are not."""
    ink = ink_mask(gray)
    h, w = ink.shape
    h_len, v_len = max(25, w // 20), max(12, h // 100)
    horizontal = cv2.morphologyEx(
        ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (h_len, 1))
    )
    vertical = cv2.morphologyEx(
        ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, v_len))
    )
    joined = cv2.dilate(cv2.bitwise_or(horizontal, vertical), np.ones((5, 5), np.uint8))
    tol = max(3, round(0.004 * max(h, w)))
    grids = []
    for x, y, bw, bh in _segments(joined):
        if bw < 2 * h_len or bh < 2 * v_len:
            continue
        rules = _segments(horizontal[y : y + bh, x : x + bw])
        ys = _cluster([y + sy + sh / 2 for _sx, sy, _sw, sh in rules], tol)
        if len(ys) < 2:
            continue
        uprights = [
            x + sx + sw / 2
            for sx, sy, sw, sh in _segments(vertical[y : y + bh, x : x + bw])
            if _near(y + sy, ys, 2 * tol) and _near(y + sy + sh, ys, 2 * tol) and sh > 2 * tol
        ]
        xs = _cluster(uprights, tol)
        if len(xs) < 2:
            continue
        cells = _cells(ink, ys, xs, tol)
        if len(cells) < 2:
            continue
        grids.append(Grid(Box(xs[0], ys[0], xs[-1], ys[-1]), len(ys) - 1, len(xs) - 1, cells))
    grids.sort(key=lambda g: (g.box.y0, g.box.x0))
    return grids


def cell_text(words: Sequence[tuple[int, Word]]) -> str:
    """The text of one cell from (line number, word) pairs: visual lines top to bottom, words
    left to right, spaced as their line was (a checkbox mark is a word of a line of its own)."""
    ordered = sorted(words, key=lambda lw: lw[1].box.cy)
    visual: list[list[tuple[int, Word]]] = []
    bottom = float("-inf")
    for line, word in ordered:
        half = 0.25 * word.box.height
        if visual and word.box.cy - half <= bottom:
            visual[-1].append((line, word))
            bottom = max(bottom, word.box.cy + half)
        else:
            visual.append([(line, word)])
            bottom = word.box.cy + half
    parts: list[str] = []
    for row in visual:
        row.sort(key=lambda lw: lw[1].box.x0)
        previous = None
        for line, word in row:
            if parts:
                same_line = previous is not None and previous == line
                parts.append(" " if not same_line or word.space_before else "")
            parts.append(word.text)
            previous = line
    return "".join(parts).strip()


def to_html(grid: Grid, texts: dict[tuple[int, int], str]) -> str:
    """Plain HTML (`<table><tr><td>`) with rowspan/colspan; cell text escaped."""
    out = ["<table>"]
    for r in range(grid.rows):
        out.append("<tr>")
        for cell in (c for c in grid.cells if c.row == r):
            attrs = (f' rowspan="{cell.rowspan}"' if cell.rowspan > 1 else "") + (
                f' colspan="{cell.colspan}"' if cell.colspan > 1 else ""
            )
            text = html.escape(texts.get((cell.row, cell.col), ""), quote=False)
            out.append(f"<td{attrs}>{text}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)
