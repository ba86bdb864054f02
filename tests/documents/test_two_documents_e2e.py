"""A chat request with two documents: pages merge across a page break inside one document,
never from the last page of the first document to the first page of the second."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.documents.pdfs import Page, distinct_sizes, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process

SIZES = distinct_sizes(4)
FIRST = ("Report one starts and", "report one ends and")
SECOND = ("report two starts and", "report two ends.")
FIRST_PAGES = [Page(w, h, (text,)) for (w, h), text in zip(SIZES[:2], FIRST, strict=True)]
SECOND_PAGES = [Page(w, h, (text,)) for (w, h), text in zip(SIZES[2:], SECOND, strict=True)]


def url(pages: list[Page]) -> str:
    return "data:application/pdf;base64," + base64.b64encode(make_pdf(pages)).decode()


def teach(fake: FakeVLLMProcess) -> None:
    """Every page pair the gateway asks about is a merge (the model would say so here)."""
    answers = {
        page.key(): [page_json(text)]
        for page, text in zip(FIRST_PAGES + SECOND_PAGES, FIRST + SECOND, strict=True)
    }
    assert len(answers) == 4
    fake.control(
        page_answers=answers,
        prompt_answers=[{"contains": ["Previous page:"], "answers": ["[(0, 0)]"]}],
    )


def file_part(data_url: str) -> dict[str, Any]:
    return {"type": "file", "file": {"file_data": data_url}}


def image_part(data_url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url}}


@pytest.mark.parametrize(
    "parts",
    [
        [file_part(url(FIRST_PAGES)), file_part(url(SECOND_PAGES))],
        [image_part(url(FIRST_PAGES)), file_part(url(SECOND_PAGES))],
    ],
    ids=["two-file-parts", "image-url-pdf-then-file-part"],
)
def test_the_last_page_of_one_document_does_not_merge_with_the_next_document(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, parts: list[dict[str, Any]]
) -> None:
    teach(fake)
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    response = httpx.post(f"{ocrflux_gateway.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == (
        "Report one starts and report one ends and\n\nreport two starts and report two ends."
    )
    detect = [
        c
        for c in fake.requests()
        if any("Previous page:" in p.get("text", "") for p in c["body"]["messages"][0]["content"])
    ]
    assert len(detect) == 2  # pages (0, 1) of each document; never (1 of the first, 0 of the next)
