"""The local engine's cross-page rules: what continues over a page break, and what does not."""

from __future__ import annotations

import pytest

from ocrflux.engines.local.continuation import (
    column_count,
    continuations,
    merge_tables,
    paragraph_continues,
    tables_continue,
)
from ocrflux.format.merge import assemble

HEAD = "<tr><td>Item</td><td>Owner</td><td>Due</td></tr>"
ROW_1 = "<tr><td>Fire drill</td><td>J. Smith</td><td>May</td></tr>"
ROW_2 = "<tr><td>Signage</td><td>A. Lee</td><td>June</td></tr>"


@pytest.mark.parametrize(
    ("last", "first"),
    [
        ("The inspector walked the whole site and", "recorded every finding below."),
        ("Items were checked by the site", "manager in person."),
        ("a hyphen splits the word inter-", "national at the break."),
        ("ends with a comma,", "then goes on."),
        ("“Quoted text runs on", "across the page.”"),
        ("检查员周一上午走遍了整个", "现场并记录了每一项发现。"),
        ("检查员周一上午走遍了整个现场，", "并记录了每一项发现。"),
    ],
)
def test_a_sentence_cut_by_the_page_break_continues(last: str, first: str) -> None:
    assert paragraph_continues(last, first)
    assert continuations(["# Title", last], [first, "Another paragraph."]) == [(1, 0)]


@pytest.mark.parametrize(
    ("last", "first"),
    [
        ("The sentence ends here.", "and yet this starts in lower case."),
        ("A question?", "maybe."),
        ("A list follows:", "first item text."),
        ('He said "stop."', "then left."),
        ("The sentence does not end", "But the next page starts a new one."),
        ("The sentence does not end", "2024 was a good year."),
        ("# A heading at the bottom", "text under it."),
        ("The sentence does not end", "# Heading"),
        ("The sentence does not end", "- a list item"),
        ("[ ] Ladders are tagged", "and more."),
        ("The sentence does not end", "[√] Fire exits are clear"),
        ("检查完毕。", "现场并记录了每一项发现。"),
        ("The text is English", "现场并记录了每一项发现。"),
        ("", "text"),
    ],
)
def test_anything_less_certain_stays_apart(last: str, first: str) -> None:
    assert not paragraph_continues(last, first)
    assert continuations([last], [first]) == []


def test_only_the_last_and_first_elements_are_considered() -> None:
    previous = ["Cut in the middle of a", "Finished."]
    assert continuations(previous, ["continuing text."]) == []
    assert continuations([], ["text"]) == [] and continuations(["text"], []) == []


def test_tables_of_the_same_width_continue_and_merge() -> None:
    first = f"<table>{HEAD}{ROW_1}</table>"
    second = f"<table>{ROW_2}</table>"
    assert column_count(first) == 3
    assert tables_continue(first, second)
    assert continuations(["Intro.", first], [second]) == [(1, 0)]
    assert merge_tables(first, second) == f"<table>{HEAD}{ROW_1}{ROW_2}</table>"


def test_a_header_row_repeated_on_the_next_page_is_dropped() -> None:
    first = f"<table>{HEAD}{ROW_1}</table>"
    second = f"<table>{HEAD}{ROW_2}</table>"
    assert merge_tables(first, second) == f"<table>{HEAD}{ROW_1}{ROW_2}</table>"


def test_tables_of_different_widths_stay_apart() -> None:
    first = f"<table>{HEAD}</table>"
    second = "<table><tr><td>a</td><td>b</td></tr></table>"
    assert not tables_continue(first, second)
    assert continuations([first], [second]) == []
    assert merge_tables(first, second) is None
    assert merge_tables(first, "Not a table.") is None


def test_the_pipeline_assembles_what_the_rules_found() -> None:
    """The pairs and the merged table in the shape `assemble` takes (as the pipeline does)."""
    page_1 = ["# Report", "The work began in", f"<table>{HEAD}{ROW_1}</table>"]
    page_2 = [f"<table>{HEAD}{ROW_2}</table>", "Done."]
    page_3 = ["spring and ended in June."]
    pairs = {(0, 1): continuations(page_1, page_2), (1, 2): continuations(page_2, page_3)}
    assert pairs == {(0, 1): [(2, 0)], (1, 2): []}
    table = merge_tables(page_1[2], page_2[0])
    assert table is not None
    text = assemble([page_1, page_2, page_3], pairs, {(0, 1, 2, 0): table})
    assert text == (
        f"# Report\n\nThe work began in\n\n<table>{HEAD}{ROW_1}{ROW_2}</table>\n\nDone.\n\n"
        "spring and ended in June."
    )
