"""What a client sent as a document: its kind, and which of its pages it asks for.

Pure and cheap (magic bytes and a page list): safe on the event loop.
"""

from __future__ import annotations

import re
from typing import Literal

from ocrflux.intake.image_input import ImageRejected, describe, sniff_mime

DocumentKind = Literal["pdf", "image", "tiff"]

ACCEPTED = "a PDF, a TIFF (one page per frame) or a PNG, JPEG, WebP, GIF or BMP image"
# The PDF header may follow some junk; readers (and pdfium) look in the first 1024 bytes.
_PDF_HEADER_WINDOW = 1024
_RANGE = re.compile(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?")


class DocumentRejected(Exception):
    """A document (or page selection) the gateway refuses; `status` is 400, or 413 too large."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


def sniff_document(data: bytes) -> DocumentKind:
    """The document's kind from its magic bytes; DocumentRejected naming what was sent."""
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return "pdf"
    try:
        mime = sniff_mime(data)
    except ImageRejected:
        found = describe(data) or "an unknown type"
        raise DocumentRejected(f"unsupported document type: {found}; send {ACCEPTED}") from None
    return "tiff" if mime == "image/tiff" else "image"


def _pages_word(n: int) -> str:
    return "1 page (0)" if n == 1 else f"{n} pages (0-{n - 1})"


def _out_of_range(page: int, num_pages: int) -> DocumentRejected:
    if num_pages == 0:
        return DocumentRejected(f"page {page} is out of range: the document has no pages")
    return DocumentRejected(
        f"page {page} is out of range: the document has {_pages_word(num_pages)}"
    )


def parse_pages(spec: list[int] | str | None, num_pages: int) -> list[int]:
    """Mistral's 0-based page selection -> sorted, distinct page indexes.

    None: every page. A list of ints (`[0, 2]`) or a string of numbers and inclusive ranges
    (`"0-5,7"`). Negative numbers, reversed ranges, anything else and pages past the end are
    refused with a message that names the document's page count.
    """
    if spec is None:
        return list(range(num_pages))
    chosen: set[int] = set()
    if isinstance(spec, str):
        if not spec.strip():
            raise DocumentRejected('pages is empty: give page numbers like "0-5,7" or omit it')
        for token in spec.split(","):
            found = _RANGE.fullmatch(token)
            if not found:
                raise DocumentRejected(
                    f"pages: {token.strip()!r} is not a page number or range "
                    '(0-based, like "0-5,7")'
                )
            first = int(found.group(1))
            last = int(found.group(2)) if found.group(2) is not None else first
            if last < first:
                raise DocumentRejected(f"pages: range {first}-{last} is reversed")
            if last >= num_pages:
                raise _out_of_range(first if first >= num_pages else last, num_pages)
            chosen.update(range(first, last + 1))
    elif isinstance(spec, list):
        if not spec:
            raise DocumentRejected("pages is an empty list: give page numbers or omit it")
        for page in spec:
            if not isinstance(page, int) or isinstance(page, bool):
                raise DocumentRejected(f"pages: {page!r} is not a page number")
            if page < 0:
                raise DocumentRejected(f"pages: page {page} is negative (pages are 0-based)")
            if page >= num_pages:
                raise _out_of_range(page, num_pages)
            chosen.add(page)
    else:
        raise DocumentRejected('pages must be a list of page numbers or a string like "0-5,7"')
    return sorted(chosen)
