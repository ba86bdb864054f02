"""Page limits per document and per request (ocrflux.documents.limits)."""

from __future__ import annotations

import pytest

from ocrflux.documents.limits import DocumentPages, PageLimits
from ocrflux.errors import APIError
from ocrflux.settings import Settings

LIMITS = PageLimits(per_document=3, per_request=5)


def refusal(documents: list[DocumentPages]) -> tuple[int, str | None, str | None, str]:
    with pytest.raises(APIError) as caught:
        LIMITS.check(documents)
    error = caught.value
    return error.status, error.code, error.param, error.message


def test_within_the_limits_nothing_is_said() -> None:
    LIMITS.check([DocumentPages(3, "a"), DocumentPages(2, "b")])
    LIMITS.check([])


def test_a_document_over_its_limit_is_named() -> None:
    documents = [DocumentPages(1, "a"), DocumentPages(4, "b"), DocumentPages(9, "c")]
    assert refusal(documents) == (
        400,
        "too_many_pages",
        "b",
        "the document has 4 pages, the limit is 3 per document",
    )


def test_a_selection_over_the_limit_says_how_to_choose_fewer() -> None:
    assert refusal([DocumentPages(1200, "pages", selected=True)]) == (
        400,
        "too_many_pages",
        "pages",
        "1,200 pages selected, the limit is 3 per document (choose fewer with 'pages')",
    )


def test_the_pages_of_all_documents_are_summed() -> None:
    documents = [DocumentPages(3, "a"), DocumentPages(1, "b"), DocumentPages(2, "c")]
    assert refusal(documents) == (
        400,
        "too_many_pages",
        "messages",
        "the request has 6 pages to read, the limit is 5 per request",
    )


def test_one_document_over_the_request_limit_is_named_by_its_field() -> None:
    limits = PageLimits(per_document=10, per_request=5)
    with pytest.raises(APIError) as caught:
        limits.check([DocumentPages(6, "pages", selected=True)])
    assert (caught.value.param, caught.value.message) == (
        "pages",
        "the request has 6 pages to read, the limit is 5 per request",
    )


def test_from_settings() -> None:
    settings = Settings(max_document_pages=7, max_request_pages=11)
    assert PageLimits.from_settings(settings) == PageLimits(7, 11)
