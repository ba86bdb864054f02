"""Page selections that name the same pages again and again, while /health is pinged (issue 18.1).

`"0-4999"` 90,000 times with a 5,000-page PDF held the event loop for 9.3 s before the fix
(it expanded every range into a set before the page limit was checked); through a 64 KB
multipart field, about a second. The gateway has the default limits (MAX_DOCUMENT_PAGES=1000).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.abuse.test_loop_stalls import ATTACK_TIMEOUT, attack, watching_health
from tests.documents.pdfs import Page, make_pdf
from tests.support import FakeVLLMProcess, Process

pytestmark = pytest.mark.abuse


@pytest.fixture(scope="module")
def blank_pdf() -> bytes:
    """5,000 empty Letter pages (~0.7 MB)."""
    return make_pdf([Page()] * 5000)


def data_url(data: bytes, mime: str = "application/pdf") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def json_ocr(gateway: Process, pdf: bytes, pages: str) -> Callable[[], httpx.Response]:
    body = orjson.dumps(
        {"document": {"type": "document_url", "document_url": data_url(pdf)}, "pages": pages}
    )

    def send() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/v1/ocr",
            content=body,
            headers={"content-type": "application/json"},
            timeout=ATTACK_TIMEOUT,
        )

    return send


def multipart_ocr(gateway: Process, pdf: bytes, pages: str) -> Callable[[], httpx.Response]:
    def send() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/v1/ocr",
            files={"file": ("big.pdf", pdf, "application/pdf")},
            data={"pages": pages},
            timeout=ATTACK_TIMEOUT,
        )

    return send


def test_a_page_selection_naming_the_same_pages_again_and_again(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, blank_pdf: bytes
) -> None:
    spec = ",".join(["0-4999"] * 90_000)  # 630 KB, 450 million pages once expanded
    with watching_health(ocrflux_gateway, "pages: '0-4999' x 90,000 (JSON, 2 requests)"):
        responses = attack([json_ocr(ocrflux_gateway, blank_pdf, spec)] * 2)
    assert [r.status_code for r in responses] == [400] * 2
    assert responses[0].json()["error"]["param"] == "pages"
    assert fake.requests() == []


def test_a_page_selection_as_big_as_a_form_field_allows(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, blank_pdf: bytes
) -> None:
    spec = ",".join(["0-4999"] * 9_300)  # just under the 64 KB a multipart field may hold
    with watching_health(ocrflux_gateway, "pages: '0-4999' x 9,300 (multipart, 4 requests)"):
        responses = attack([multipart_ocr(ocrflux_gateway, blank_pdf, spec)] * 4)
    assert [r.status_code for r in responses] == [400] * 4
    assert responses[0].json()["error"]["param"] == "pages"
    assert fake.requests() == []


def test_ranges_that_each_name_every_page(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, blank_pdf: bytes
) -> None:
    spec = ",".join(["0-4999"] * 1000)  # as many ranges as pages allowed: counted, not expanded
    with watching_health(ocrflux_gateway, "pages: '0-4999' x 1,000 (JSON, 8 requests)"):
        responses = attack([json_ocr(ocrflux_gateway, blank_pdf, spec)] * 8)
    assert [r.status_code for r in responses] == [400] * 8
    assert responses[0].json()["error"]["code"] == "too_many_pages"
    assert fake.requests() == []
