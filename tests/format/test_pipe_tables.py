"""`table_format: "markdown"`: pipe tables for span-free tables, HTML kept for the rest."""

from __future__ import annotations

from ocrflux.format.pipe_tables import pipe_table, tables_to_markdown


def test_a_plain_table_becomes_a_pipe_table_with_its_first_row_as_header() -> None:
    html = "<table><tr><th>Item</th><th>Qty</th></tr><tr><td>R&amp;D</td><td>3</td></tr></table>"
    assert pipe_table(html) == "| Item | Qty |\n|---|---|\n| R&amp;D | 3 |"


def test_pipes_and_line_breaks_inside_cells_cannot_break_the_table() -> None:
    html = "<table><tr><td>a|b</td><td>one\ntwo</td></tr></table>"
    assert pipe_table(html) == "| a\\|b | one<br>two |\n|---|---|"


def test_tables_with_spans_or_nested_tables_stay_html() -> None:
    spans = '<table><tr><td colspan="2">Total</td></tr><tr><td>1</td><td>2</td></tr></table>'
    nested = "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>"
    assert pipe_table(spans) is None
    assert pipe_table(nested) is None
    text = f"# Report\n\n{spans}\n\nEnd"
    assert tables_to_markdown(text) == text


def test_only_the_tables_of_a_page_change() -> None:
    text = "Before\n\n<table><tr><td>x</td></tr></table>\n\nAfter <b>bold</b>"
    assert tables_to_markdown(text) == "Before\n\n| x |\n|---|\n\nAfter <b>bold</b>"
