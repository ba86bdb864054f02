"""Page limits on every door (issue 18.4): `/v1/ocr`, chat `file` parts, chat `image_url` PDFs
and TIFFs, each refused before the first page call; and the pages of a whole request."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.documents.pdfs import Page, make_pdf, multipage_tiff
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

PER_DOCUMENT, PER_REQUEST = 3, 5


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    env = gateway_env(
        fake_server.port,
        prompt_mode="ocrflux",
        max_document_pages=PER_DOCUMENT,
        max_request_pages=PER_REQUEST,
    )
    started = start_gateway(env)
    yield started
    started.stop()


def pdf(pages: int) -> str:
    data = make_pdf([Page()] * pages)
    return "data:application/pdf;base64," + base64.b64encode(data).decode()


def tiff(frames: int) -> str:
    data = multipage_tiff([(40, 30)] * frames)
    return "data:image/tiff;base64," + base64.b64encode(data).decode()


def file_part(url: str) -> dict[str, Any]:
    return {"type": "file", "file": {"file_data": url}}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def chat(gateway: Process, *parts: dict[str, Any], stream: bool = False) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": list(parts)}]}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json={**body, "stream": stream}, timeout=60
    )


def error(response: httpx.Response) -> tuple[int, str, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["param"], body["message"]


def test_ocr_refuses_a_document_over_the_page_limit(
    gateway: Process, fake: FakeVLLMProcess
) -> None:
    document = {"document": {"type": "document_url", "document_url": pdf(4)}}
    response = httpx.post(f"{gateway.url}/v1/ocr", json=document, timeout=60)
    assert error(response) == (
        400,
        "too_many_pages",
        "pages",
        "4 pages selected, the limit is 3 per document (choose fewer with 'pages')",
    )
    assert fake.requests() == []
    chosen = {**document, "pages": "1-3"}
    assert httpx.post(f"{gateway.url}/v1/ocr", json=chosen, timeout=60).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_chat_file_part_over_the_page_limit(
    gateway: Process, fake: FakeVLLMProcess, stream: bool
) -> None:
    response = chat(gateway, {"type": "text", "text": "read"}, file_part(pdf(4)), stream=stream)
    assert error(response) == (
        400,
        "too_many_pages",
        "messages[0].content[1].file.file_data",
        "the document has 4 pages, the limit is 3 per document",
    )
    assert fake.requests() == []


@pytest.mark.parametrize("url", [pdf(4), tiff(4)], ids=["pdf", "tiff"])
def test_chat_image_url_document_over_the_page_limit(
    gateway: Process, fake: FakeVLLMProcess, url: str
) -> None:
    response = chat(gateway, image_part(url))
    assert error(response) == (
        400,
        "too_many_pages",
        "messages[0].content[0].image_url.url",
        "the document has 4 pages, the limit is 3 per document",
    )
    assert fake.requests() == []


def test_the_pages_of_a_request_are_summed_over_its_parts(
    gateway: Process, fake: FakeVLLMProcess
) -> None:
    png = "data:image/png;base64," + base64.b64encode(_png()).decode()
    response = chat(gateway, file_part(pdf(3)), image_part(png), file_part(pdf(2)))
    assert error(response) == (
        400,
        "too_many_pages",
        "messages",
        "the request has 6 pages to read, the limit is 5 per request",
    )
    assert fake.requests() == []
    assert chat(gateway, file_part(pdf(3)), file_part(pdf(2))).status_code == 200


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), "white").save(buffer, "PNG")
    return buffer.getvalue()
