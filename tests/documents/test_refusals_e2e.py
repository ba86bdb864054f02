"""What a refused document is called, end to end (issue 20.5): an empty file says it is empty,
an Office file is named as one, and both list what is accepted."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.documents.pdfs import DOCX
from tests.support import FakeVLLMProcess, Process

ACCEPTED = "send a PDF, a TIFF (one page per frame) or a PNG, JPEG, WebP, GIF or BMP image"
EMPTY = f"the document is empty (0 bytes); {ACCEPTED}"
WORD = f"unsupported document type: a Word document (.docx); {ACCEPTED}"


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize(("data", "message"), [(b"", EMPTY), (DOCX, WORD)], ids=["empty", "docx"])
def test_an_upload(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, data: bytes, message: str
) -> None:
    files = {"file": ("report.docx", data, "application/octet-stream")}
    response = httpx.post(f"{ocrflux_gateway.url}/v1/ocr", files=files, timeout=30)
    assert refusal(response) == (400, "invalid_document", message)
    assert fake.requests() == []


def test_a_document_url(ocrflux_gateway: Process, fake: FakeVLLMProcess) -> None:
    url = "data:application/pdf;base64," + base64.b64encode(DOCX).decode()
    body = {"document": {"type": "document_url", "document_url": url}}
    response = httpx.post(f"{ocrflux_gateway.url}/v1/ocr", json=body, timeout=30)
    assert refusal(response) == (400, "invalid_document", WORD)


def test_a_chat_file_part(ocrflux_gateway: Process, fake: FakeVLLMProcess) -> None:
    url = "data:application/pdf;base64," + base64.b64encode(DOCX).decode()
    part = {"type": "file", "file": {"file_data": url}}
    body = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    response = httpx.post(f"{ocrflux_gateway.url}/v1/chat/completions", json=body, timeout=30)
    assert refusal(response) == (400, "invalid_document", WORD)
    assert response.json()["error"]["param"] == "messages[0].content[0].file.file_data"
