"""How many pages one request may have read: per document, and over all of its documents.

Every door that reads documents (`/v1/ocr`, chat `file` parts, chat `image_url` parts that
hold a PDF or TIFF, and batch lines, which call the same services) checks its page counts here
once the documents are open (their page counts are known) and before the first page is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrflux.errors import APIError
from ocrflux.settings import Settings


@dataclass(frozen=True)
class DocumentPages:
    """One document of a request: the pages it would have read, and the field it came in."""

    pages: int
    param: str | None
    selected: bool = False  # the count is a `pages` selection, not the whole document


@dataclass(frozen=True)
class PageLimits:
    """MAX_DOCUMENT_PAGES and MAX_REQUEST_PAGES."""

    per_document: int
    per_request: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PageLimits:
        return cls(settings.max_document_pages, settings.max_request_pages)

    def check(self, documents: Sequence[DocumentPages]) -> None:
        """A 400 naming the first document over its limit, or the request over its own."""
        for document in documents:
            if document.pages > self.per_document:
                raise _too_many(_document_message(document, self.per_document), document.param)
        total = sum(document.pages for document in documents)
        if total > self.per_request:
            param = documents[0].param if len(documents) == 1 else "messages"
            raise _too_many(
                f"the request has {total:,} pages to read, the limit is {self.per_request:,} "
                "per request",
                param,
            )


def _document_message(document: DocumentPages, limit: int) -> str:
    if document.selected:
        return (
            f"{document.pages:,} pages selected, the limit is {limit:,} per document "
            "(choose fewer with 'pages')"
        )
    return f"the document has {document.pages:,} pages, the limit is {limit:,} per document"


def _too_many(message: str, param: str | None) -> APIError:
    return APIError(400, message, param=param, code="too_many_pages")
