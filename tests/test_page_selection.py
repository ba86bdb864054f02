"""Mistral's page selection (ocrflux.page_selection): parsed, bounded and counted, not expanded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocrflux.page_selection import PageSelection, PageSelectionError, parse_selection


@pytest.mark.parametrize(("spec", "pages"), [
    ([0, 2], [0, 2]),
    ([7, 0, 7, 3], [0, 3, 7]),  # sorted, each once
    ("0-5,7", [0, 1, 2, 3, 4, 5, 7]),
    ("7, 0-2 ,1", [0, 1, 2, 7]),
    (" 3 - 4 ", [3, 4]),
    ("9", [9]),
    ("2-2", [2]),
])  # fmt: skip
def test_parse_selection(spec: list[int] | str, pages: list[int]) -> None:
    assert parse_selection(spec, num_pages=10).pages() == pages


def test_every_page() -> None:
    assert PageSelection.every(4).pages() == [0, 1, 2, 3]
    assert PageSelection.every(0).pages() == []


@pytest.mark.parametrize(("spec", "ranges"), [
    ("0-4,5-9", ((0, 9),)),  # touching ranges merge
    ("3-8,0-4", ((0, 8),)),  # overlapping ones too, whatever their order
    ("0-4999," * 999 + "0-4999", ((0, 4999),)),
    ([5, 3, 4, 9], ((3, 5), (9, 9))),
])  # fmt: skip
def test_ranges_are_merged(spec: list[int] | str, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_selection(spec).ranges == ranges


def test_a_range_is_counted_from_its_ends_never_expanded() -> None:
    # A set of a billion pages would take minutes and tens of GB; two numbers take nothing.
    selection = parse_selection("0-999999999,5-10,999999999")
    assert selection.count == 1_000_000_000
    assert selection.ranges == ((0, 999_999_999),)


@pytest.mark.parametrize(("spec", "message"), [
    ("0-4999," * 4 + "0-4999", "pages is 5 numbers and ranges, more than the 4 pages a document "
     'may have read: give ranges like "0-99" instead of every number'),
    (" " * 97, "pages is 97 characters, more than the 4 pages a document may have read: give "
     'ranges like "0-99" instead of every number'),
    ([0, 1, 2, 3, 4], "pages is 5 page numbers, more than the 4 pages a document may have read: "
     'give ranges like "0-99" instead of every number'),
])  # fmt: skip
def test_a_spec_longer_than_the_page_limit_allows_is_refused_unread(
    spec: list[int] | str, message: str
) -> None:
    with pytest.raises(PageSelectionError) as caught:
        parse_selection(spec, max_ranges=4)
    assert caught.value.message == message


def test_a_spec_at_the_bounds_is_read() -> None:
    assert parse_selection("0-4999," * 3 + "0-4999", max_ranges=4).count == 5000
    assert parse_selection(" " * 95 + "1", max_ranges=4).pages() == [1]  # 96 characters
    assert parse_selection([0, 1, 2, 3], max_ranges=4).count == 4


@pytest.mark.parametrize(("spec", "num_pages", "message"), [
    ([7], 3, "page 7 is out of range: the document has 3 pages (0-2)"),
    ("0-7", 3, "page 7 is out of range: the document has 3 pages (0-2)"),
    ("5-7", 3, "page 5 is out of range: the document has 3 pages (0-2)"),
    ([1], 1, "page 1 is out of range: the document has 1 page (0)"),
    ([0], 0, "page 0 is out of range: the document has no pages"),
    ("3", 3, "page 3 is out of range: the document has 3 pages (0-2)"),
    ("0-999999999", 2, "page 999999999 is out of range: the document has 2 pages (0-1)"),
    ([-1], 3, "pages: page -1 is negative (pages are 0-based)"),
    ("-1", 3, "pages: '-1' is not a page number or range (0-based, like \"0-5,7\")"),
    ("5-2", 9, "pages: range 5-2 is reversed"),
    ("1,,2", 3, "pages: '' is not a page number or range (0-based, like \"0-5,7\")"),
    ("one", 3, "pages: 'one' is not a page number or range (0-based, like \"0-5,7\")"),
    ("1-2-3", 9, "pages: '1-2-3' is not a page number or range (0-based, like \"0-5,7\")"),
    ("1.5", 9, "pages: '1.5' is not a page number or range (0-based, like \"0-5,7\")"),
    ("٣", 9, "pages: '٣' is not a page number or range (0-based, like \"0-5,7\")"),
    ("", 3, 'pages is empty: give page numbers like "0-5,7" or omit it'),
    ([], 3, "pages is an empty list: give page numbers or omit it"),
    ([True], 3, "pages: True is not a page number"),
    (["1"], 3, "pages: '1' is not a page number"),
    ([1.0], 3, "pages: 1.0 is not a page number"),
    (3, 9, 'pages must be a list of page numbers or a string like "0-5,7"'),
    (b"\x01", 9, 'pages must be a list of page numbers or a string like "0-5,7"'),
])  # fmt: skip
def test_bad_page_selections_say_what_is_wrong(spec: object, num_pages: int, message: str) -> None:
    with pytest.raises(PageSelectionError) as caught:
        parse_selection(spec, num_pages=num_pages)  # type: ignore[arg-type]
    assert caught.value.message == message


def test_without_a_document_only_the_spec_is_checked() -> None:
    assert parse_selection("0-5000000").count == 5_000_001
    with pytest.raises(PageSelectionError, match="'abc' is not a page number"):
        parse_selection("abc")


@given(st.lists(st.integers(0, 40), min_size=1), st.integers(1, 40))
def test_list_selection_is_the_sorted_set_or_a_refusal(spec: list[int], num_pages: int) -> None:
    if max(spec) >= num_pages:
        with pytest.raises(PageSelectionError, match=f"the document has {num_pages} page"):
            parse_selection(spec, num_pages=num_pages)
    else:
        selection = parse_selection(spec, num_pages=num_pages)
        assert selection.pages() == sorted(set(spec))
        assert selection.count == len(set(spec))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1), st.integers(1, 31))
def test_range_selection_matches_its_expansion(ranges: list[tuple[int, int]], n: int) -> None:
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    expected: set[int] = set()
    for a, b in ranges:
        expected.update(range(a, b + 1))
    if any(b < a for a, b in ranges) or max(expected | {a for a, _ in ranges}) >= n:
        with pytest.raises(PageSelectionError):
            parse_selection(spec, num_pages=n)
    else:
        selection = parse_selection(spec, num_pages=n)
        assert selection.pages() == sorted(expected)
        assert selection.count == len(expected)
