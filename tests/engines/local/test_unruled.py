"""Unruled tables over synthetic rows: only clear, three-plus-column layouts qualify."""

from __future__ import annotations

from ocrflux.engines.local.geometry import Box, Word
from ocrflux.engines.local.reading_order import Item, Row
from ocrflux.engines.local.unruled import table_runs, to_html


def row(y: float, cells: list[tuple[str, float, float]], region: int = 0) -> Row:
    items = [
        Item(Box(x0, y, x1, y + 30), (Word(t, Box(x0, y, x1, y + 30), False),))
        for t, x0, x1 in cells
    ]
    return Row(items, region)


def figures(y: float, a: str, b: str, c: str) -> Row:
    return row(y, [(a, 60, 200), (b, 300, 380), (c, 500, 560)])


def test_three_aligned_columns_over_three_rows_are_a_table() -> None:
    rows = [figures(100 + 40 * k, f"r{k}", str(k), f"{k}%") for k in range(4)]
    assert table_runs(rows) == [(0, 4)]
    assert to_html(rows[:2]) == (
        "<table><tr><td>r0</td><td>0</td><td>0%</td></tr><tr><td>r1</td><td>1</td><td>1%</td></tr></table>"
    )


def test_label_value_pairs_two_rows_and_misaligned_columns_are_not() -> None:
    pairs = [row(100 + 40 * k, [("Name:", 60, 160), ("John", 300, 400)]) for k in range(4)]
    assert table_runs(pairs) == []
    assert table_runs([figures(100, "a", "1", "2"), figures(140, "b", "3", "4")]) == []
    crooked = [
        figures(100, "a", "1", "2"),
        row(140, [("b", 60, 320), ("3", 330, 380), ("4", 500, 560)]),
    ]
    crooked.append(figures(180, "c", "5", "6"))
    assert table_runs(crooked) == []


def test_text_escaped_and_runs_stop_at_a_different_row() -> None:
    rows = [figures(100 + 40 * k, "a<b", "&", "c") for k in range(3)]
    rows.append(row(220, [("a closing sentence", 60, 700)]))
    assert table_runs(rows) == [(0, 3)]
    assert "<td>a&lt;b</td><td>&amp;</td>" in to_html(rows[:3])
