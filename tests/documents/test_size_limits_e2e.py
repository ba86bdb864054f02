"""MAX_DOCUMENT_BYTES on every door, at the limit and one byte past it: a multipart upload to
`/v1/ocr` (under the body limit, so only the document limit can refuse it), a `document_url`
data: URL, and a chat `file` part."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.documents.pdfs import Page, filler, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

PAGE = Page(612, 792, (filler(200),))  # 1,198 bytes: over the 1,024 floor
PDF = make_pdf([PAGE])
# A byte past the limit: a PDF reader ignores what follows %%EOF, the size check does not.
OVER = PDF + b"\n"
LIMIT = len(PDF)


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    assert LIMIT == 1_198  # the messages below say so; over MAX_DOCUMENT_BYTES floor of 1,024
    env = gateway_env(fake_server.port, prompt_mode="ocrflux", max_document_bytes=LIMIT)
    started = start_gateway(env)
    yield started
    started.stop()


def upload(gateway: Process, data: bytes) -> httpx.Response:
    files = {"file": ("report.pdf", io.BytesIO(data), "application/pdf")}
    return httpx.post(f"{gateway.url}/v1/ocr", files=files, data={"pages": "0"}, timeout=60)


def data_url(data: bytes) -> str:
    return "data:application/pdf;base64," + base64.b64encode(data).decode()


def error(response: httpx.Response) -> tuple[int, str | None, str | None, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["param"], body["message"]


def test_an_upload_exactly_at_the_limit_is_read(gateway: Process, fake: FakeVLLMProcess) -> None:
    fake.control(page_answers={PAGE.key(): [page_json("One page.")]})
    response = upload(gateway, PDF)
    assert response.status_code == 200, response.text
    assert response.json()["document_text"] == "One page."
    assert response.json()["usage_info"]["doc_size_bytes"] == LIMIT


def test_an_upload_one_byte_over_the_document_limit_is_a_413(
    gateway: Process, fake: FakeVLLMProcess
) -> None:
    # The form's body limit is the file limit plus room for 32 fields: this body is far under
    # it, so only the file's own size check can refuse it (while it arrives, never stored).
    response = upload(gateway, OVER)
    assert error(response) == (
        413,
        "file_too_large",
        "file",
        f"the file is over the limit of {LIMIT:,} bytes",
    )
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests() == []


def test_a_document_url_one_byte_over_the_limit_is_a_413(
    gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(page_answers={PAGE.key(): [page_json("One page.")]})
    at_limit = {"document": {"type": "document_url", "document_url": data_url(PDF)}}
    assert httpx.post(f"{gateway.url}/v1/ocr", json=at_limit, timeout=60).status_code == 200
    fake.reset()
    over = {"document": {"type": "document_url", "document_url": data_url(OVER)}}
    response = httpx.post(f"{gateway.url}/v1/ocr", json=over, timeout=60)
    assert error(response) == (
        413,
        "document_too_large",
        "document",
        "document is 1,199 bytes, the limit is 1,198 bytes",
    )
    assert fake.requests() == []


def test_a_chat_file_part_one_byte_over_the_limit_is_a_413(
    gateway: Process, fake: FakeVLLMProcess
) -> None:
    def chat(data: bytes) -> httpx.Response:
        part: dict[str, Any] = {"type": "file", "file": {"file_data": data_url(data)}}
        body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)

    fake.control(page_answers={PAGE.key(): [page_json("One page.")]})
    at_limit = chat(PDF)
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["choices"][0]["message"]["content"] == "One page."
    fake.reset()
    assert error(chat(OVER)) == (
        413,
        "document_too_large",
        "messages[0].content[0].file.file_data",
        "document is 1,199 bytes, the limit is 1,198 bytes",
    )
    assert fake.requests() == []
