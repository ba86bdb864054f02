"""Property tests: HTML tables with random spans survive the trip through the cell matrix."""

from __future__ import annotations

import html
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocrflux.format.page import (
    PageResponse,
    convert_table,
    html_to_matrix,
    matrix_to_html,
    render_page,
    table_rows,
)
from tests.format.tilings import tilings

cell_text = st.text(alphabet=st.sampled_from("abcXYZ019 .,:;-+/&<>\"'中文表格☑√"), max_size=12).map(
    lambda text: html.escape(text.strip(), quote=False)
)


@st.composite
def span_tables(draw: st.DrawFn) -> tuple[str, int, int, int]:
    """A canonical HTML table tiling a random grid with random rectangles.

    Returns (html, rows, columns, number of grid cells covered by a span).
    """
    nrows, ncols, spans = draw(tilings(max_side=6))
    rows: list[list[str]] = [[] for _ in range(nrows)]
    for r, _, rowspan, colspan in spans:
        tag = draw(st.sampled_from(["td", "th"]))
        attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (
            f' colspan="{colspan}"' if colspan > 1 else ""
        )
        rows[r].append(f"<{tag}{attrs}>{draw(cell_text)}</{tag}>")
    covered = sum(rowspan * colspan - 1 for _, _, rowspan, colspan in spans)
    table = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return "<table>" + table + "</table>", nrows, ncols, covered


@settings(max_examples=300, deadline=None)
@given(span_tables())
def test_html_to_matrix_and_back_gives_the_same_table(table: tuple[str, int, int, int]) -> None:
    original, nrows, ncols, covered = table
    matrix = html_to_matrix(original)

    grid = table_rows(matrix)
    assert len(grid) == nrows and all(len(row) == ncols for row in grid)
    markers = sum(cell in ("<l>", "<t>", "<lt>") for row in grid for cell in row)
    assert markers == covered
    assert "rowspan" not in matrix and "colspan" not in matrix

    assert matrix_to_html(matrix) == original


@settings(max_examples=100, deadline=None)
@given(span_tables())
def test_page_with_matrix_table_renders_the_html_table(table: tuple[str, int, int, int]) -> None:
    original = table[0]
    text = f"# Title\n\n{html_to_matrix(original)}\n\nAfter."
    page = PageResponse("en", True, 0, True, False, text)
    assert render_page(page) == f"# Title\n\n{original}\n\nAfter."


@example("<td><l></td>")  # found by hypothesis: a marker cell outside any table
@example("<table><td><table><td><l>")  # found by hypothesis: a nested table
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<l>", "<t>", "<lt>", "x"]
        ),
        max_size=30,
    ).map("".join)
)
def test_arbitrary_tag_soup_never_raises_and_leaves_no_marker_cell(soup: str) -> None:
    result = convert_table(soup)
    # Either a proper span table (markers consumed) or the text with the markers removed.
    assert not re.search(r"<td>\s*<(?:l|t|lt)>\s*</td>", result)
    rendered = render_page(PageResponse("en", True, 0, True, False, soup))
    assert not re.search(r"<td>\s*<(?:l|t|lt)>\s*</td>", rendered)
