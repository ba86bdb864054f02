"""What a client sent (ocrflux.documents.sources): document kinds and page selection."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ocrflux.documents.sources import DocumentRejected, parse_pages, sniff_document
from tests.documents.pdfs import make_pdf, multipage_tiff, text_page


def encode(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "white").save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "kind"), [
    (make_pdf([text_page(["x"])]), "pdf"),
    (b"\xef\xbb\xbf\r\n%PDF-1.4\n...", "pdf"),  # junk before the header, as readers allow
    (encode("PNG"), "image"),
    (encode("JPEG"), "image"),
    (encode("WEBP"), "image"),
    (encode("GIF"), "image"),
    (encode("BMP"), "image"),
    (multipage_tiff([(20, 10), (10, 20)]), "tiff"),
])  # fmt: skip
def test_sniff_document(data: bytes, kind: str) -> None:
    assert sniff_document(data) == kind


@pytest.mark.parametrize(("data", "named"), [
    (b"PK\x03\x04 word document", "application/zip"),
    (b"<!DOCTYPE html><html>", "text/html"),
    (b'{"document": 1}', "application/json"),
    (b"\x00\x00\x00\x18ftypheic....", "image/heic"),
    (b"plain words", "an unknown type"),
    (b"", "an unknown type"),
])  # fmt: skip
def test_other_types_are_refused_with_what_was_sent_and_what_is_accepted(
    data: bytes, named: str
) -> None:
    with pytest.raises(DocumentRejected) as caught:
        sniff_document(data)
    assert caught.value.status == 400
    assert caught.value.message == (
        f"unsupported document type: {named}; send a PDF, a TIFF (one page per frame) or a "
        "PNG, JPEG, WebP, GIF or BMP image"
    )


@pytest.mark.parametrize(("spec", "pages"), [
    (None, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ([0, 2], [0, 2]),
    ([7, 0, 7, 3], [0, 3, 7]),  # sorted, each once
    ("0-5,7", [0, 1, 2, 3, 4, 5, 7]),
    ("7, 0-2 ,1", [0, 1, 2, 7]),
    (" 3 - 4 ", [3, 4]),
    ("9", [9]),
    ("2-2", [2]),
])  # fmt: skip
def test_parse_pages(spec: list[int] | str | None, pages: list[int]) -> None:
    assert parse_pages(spec, 10) == pages


@pytest.mark.parametrize(("spec", "num_pages", "message"), [
    ([7], 3, "page 7 is out of range: the document has 3 pages (0-2)"),
    ("0-7", 3, "page 7 is out of range: the document has 3 pages (0-2)"),
    ("5-7", 3, "page 5 is out of range: the document has 3 pages (0-2)"),
    ([1], 1, "page 1 is out of range: the document has 1 page (0)"),
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
])  # fmt: skip
def test_bad_page_selections_say_what_is_wrong(spec: object, num_pages: int, message: str) -> None:
    with pytest.raises(DocumentRejected) as caught:
        parse_pages(spec, num_pages)  # type: ignore[arg-type]
    assert (caught.value.message, caught.value.status) == (message, 400)


@given(st.lists(st.integers(0, 40), min_size=1), st.integers(1, 40))
def test_list_selection_is_the_sorted_set_or_a_refusal(spec: list[int], num_pages: int) -> None:
    if max(spec) >= num_pages:
        with pytest.raises(DocumentRejected, match=f"the document has {num_pages} page"):
            parse_pages(spec, num_pages)
    else:
        assert parse_pages(spec, num_pages) == sorted(set(spec))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1), st.integers(1, 31))
def test_range_selection_matches_its_expansion(ranges: list[tuple[int, int]], n: int) -> None:
    spec = ",".join(f"{a}-{b}" for a, b in ranges)
    expected: set[int] = set()
    for a, b in ranges:
        expected.update(range(a, b + 1))
    if any(b < a for a, b in ranges) or max(expected | {a for a, _ in ranges}) >= n:
        with pytest.raises(DocumentRejected):
            parse_pages(spec, n)
    else:
        assert parse_pages(spec, n) == sorted(expected)
