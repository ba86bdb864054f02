"""Big inline documents (issue 18 item 5) are kept as the body's bytes, not parsed into one huge
string: whichever door they come through they read, and are refused, as before."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.documents.pdfs import Page, make_pdf, page_json
from tests.documents.test_ocr_e2e import page_calls
from tests.support import FakeVLLMProcess, Process

# A real two-page PDF padded past inline_data.MIN_BYTES (a comment after %%EOF is ignored).
PDF = make_pdf([Page(blocks=("First page.",)), Page(blocks=("Second page.",))])
BIG_PDF = PDF + b"%" + b"x" * (1 << 20) + b"\n"


def data_url(data: bytes, mime: str = "application/pdf") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat(gateway: Process, part: dict[str, Any]) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)


def ocr(gateway: Process, url: str) -> httpx.Response:
    body = {"document": {"type": "document_url", "document_url": url}}
    return httpx.post(f"{gateway.url}/v1/ocr", json=body, timeout=60)


@pytest.mark.parametrize(
    "send",
    [
        lambda g: ocr(g, data_url(BIG_PDF)),
        lambda g: chat(g, {"type": "file", "file": {"file_data": data_url(BIG_PDF)}}),
        lambda g: chat(g, {"type": "image_url", "image_url": {"url": data_url(BIG_PDF)}}),
        lambda g: ocr(g, data_url(BIG_PDF).replace("+", "-").replace("/", "_")),  # URL-safe
    ],
    ids=["ocr-document_url", "chat-file", "chat-image_url", "urlsafe-base64"],
)
def test_a_big_inline_pdf_is_read_through_every_door(
    ocrflux_gateway: Process,
    fake: FakeVLLMProcess,
    send: Callable[[Process], httpx.Response],
) -> None:
    fake.control(answer=page_json("A page."))
    response = send(ocrflux_gateway)
    assert response.status_code == 200, response.text
    assert len(page_calls(fake)) == 2  # both pages were read


def test_a_big_inline_payload_that_is_not_base64_is_a_400(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    url = "data:application/pdf;base64," + "~" * (2 << 20)
    response = ocr(ocrflux_gateway, url)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["param"]) == (
        400,
        "invalid_document",
        "document",
    )
    assert error["message"] == "not valid base64"
    assert fake.requests() == []


def test_a_big_inline_document_over_the_limit_is_a_413(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(max_document_bytes=1 << 20)
    response = chat(gateway, {"type": "file", "file": {"file_data": data_url(BIG_PDF)}})
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (413, "document_too_large")
    assert error["param"] == "messages[0].content[0].file.file_data"
    assert fake.requests() == []


def test_a_big_pdf_as_a_passthrough_image_is_refused_as_a_small_one_is(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    answers = [
        chat(passthrough_gateway, {"type": "image_url", "image_url": {"url": data_url(pdf)}})
        for pdf in (PDF, BIG_PDF)
    ]
    small, big = (r.json()["error"] for r in answers)
    assert [r.status_code for r in answers] == [400, 400]
    assert big == small and big["code"] == "invalid_image", big
    assert fake.requests() == []
