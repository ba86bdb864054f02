"""Ruled tables from pixels (no OCR): the grid, merged cells, HTML, text in cells."""

from __future__ import annotations

import numpy as np

from ocrflux.engines.local.geometry import Box, Word
from ocrflux.engines.local.tables import Cell, Grid, cell_text, find_grids, to_html
from tests.engines.local.pages import CJK, SANS, Sheet, font


def test_a_plain_grid() -> None:
    sheet = Sheet((800, 400))
    sheet.table((50, 50), [200, 150, 250], 45, [["a", "b", "c"]] * 4, font(SANS, 22))
    [grid] = find_grids(np.asarray(sheet.image.convert("L")))
    assert (grid.rows, grid.cols) == (4, 3)
    assert all((c.rowspan, c.colspan) == (1, 1) for c in grid.cells)
    assert abs(grid.box.x0 - 50) <= 2 and abs(grid.box.x1 - 650) <= 2


def test_a_title_row_spanning_all_columns_and_tall_letters_inside_cells() -> None:
    sheet = Sheet((800, 400))
    rows = [["项目", "負責人", "截止日期"], ["消防演练", "张伟", "五月一日"]]
    sheet.table((50, 50), [220, 220, 240], 50, rows, font(CJK, 26), title="Overview")
    [grid] = find_grids(np.asarray(sheet.image.convert("L")))
    assert (grid.rows, grid.cols) == (3, 3)
    first = grid.cells[0]
    assert (first.row, first.col, first.rowspan, first.colspan) == (0, 0, 1, 3)
    assert len(grid.cells) == 7


def test_a_merged_block_of_rows() -> None:
    sheet = Sheet((600, 400))
    x, y, w, h = 50, 50, 150, 40
    d = sheet.draw
    for k in range(4):  # full horizontal rules except under the first column's rows 1..2
        d.line((x, y + k * h, x + 3 * w, y + k * h), fill=0, width=2)
    d.line((x, y + 4 * h, x + 3 * w, y + 4 * h), fill=0, width=2)
    d.rectangle((x + 2, y + h + 3, x + w - 2, y + 3 * h - 3), fill="white")  # erase rule 2
    for k in range(4):
        d.line((x + k * w, y, x + k * w, y + 4 * h), fill=0, width=2)
    [grid] = find_grids(np.asarray(sheet.image.convert("L")))
    spans = {(c.row, c.col): (c.rowspan, c.colspan) for c in grid.cells}
    assert spans[(1, 0)] == (2, 1) and (2, 0) not in spans


def test_text_without_rules_is_not_a_table() -> None:
    sheet = Sheet((800, 300))
    for k in range(4):
        sheet.text((50, 40 + 40 * k), "Item        Owner        Due", font(SANS, 24))
    sheet.draw.line((50, 250, 700, 250), fill=0, width=2)  # a lone rule
    assert find_grids(np.asarray(sheet.image.convert("L"))) == []


def test_html_with_spans_and_escaped_text() -> None:
    grid = Grid(
        Box(0, 0, 20, 20),
        2,
        2,
        (
            Cell(0, 0, 1, 2, Box(0, 0, 20, 10)),
            Cell(1, 0, 1, 1, Box(0, 10, 10, 20)),
            Cell(1, 1, 1, 1, Box(10, 10, 20, 20)),
        ),
    )
    html = to_html(grid, {(0, 0): "A<B & C>", (1, 1): "x"})
    assert html == (
        '<table><tr><td colspan="2">A&lt;B &amp; C&gt;</td></tr>'
        "<tr><td></td><td>x</td></tr></table>"
    )


def test_cell_text_keeps_line_spacing_and_order() -> None:
    line0 = [Word("J.", Box(10, 10, 20, 30), False), Word("Smith", Box(24, 10, 60, 30), True)]
    chars = [Word("张", Box(10, 40, 30, 60), False), Word("伟", Box(30, 40, 50, 60), False)]
    mark = Word("[√]", Box(0, 12, 8, 28))
    words = [(1, chars[1]), (0, line0[1]), (1, chars[0]), (0, line0[0]), (-1, mark)]
    assert cell_text(words) == "[√] J. Smith 张伟"
