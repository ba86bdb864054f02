"""A document whose pages each burn the whole render budget, beside a legit one, while /health
is pinged (issue 18.2).

Three pages of 2M strokes (~100 KB) held every render worker; a concurrent 2-page PDF took
80.7 s (0.17 s alone) before documents took turns in the render pool. The gateway here ends
a page after RENDER_PAGE_CPU_SECONDS=1, so the attack is bounded.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.abuse.test_loop_stalls import attack, watching_health
from tests.documents.pdfs import Page, hostile_pdf, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process

pytestmark = pytest.mark.abuse

BUDGET = 1.0


def ocr(gateway: Process, pdf: bytes, delay: float = 0.0) -> Callable[[], httpx.Response]:
    url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    body = orjson.dumps(
        {"document": {"type": "document_url", "document_url": url}, "skip_cross_page_merge": True}
    )

    def send() -> httpx.Response:
        time.sleep(delay)
        return httpx.post(
            f"{gateway.url}/v1/ocr",
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        )

    return send


def test_a_document_whose_pages_burn_the_render_budget_beside_a_legit_one(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(render_workers=2, render_page_cpu_seconds=BUDGET)
    pages = [Page(600, 800, ("Legit page one.",)), Page(610, 800, ("Legit page two.",))]
    fake.control(page_answers={p.key(): [page_json(f"page {i}")] for i, p in enumerate(pages)})
    finished: dict[str, float] = {}

    def timed(name: str, send: Callable[[], httpx.Response]) -> Callable[[], Any]:
        def run() -> httpx.Response:
            response = send()
            finished[name] = time.monotonic()
            return response

        return run

    case = "3 pages of 2M strokes beside a 2-page PDF (render budget 1 s)"
    with watching_health(gateway, case):
        hostile, legit = attack([
            timed("hostile", ocr(gateway, hostile_pdf(pages=3))),
            timed("legit", ocr(gateway, make_pdf(pages), delay=0.5)),
        ])  # fmt: skip
    assert legit.status_code == 200, legit.text
    assert [p["markdown"] for p in legit.json()["pages"]] == ["page 0", "page 1"]
    assert hostile.status_code == 400
    assert "needs more than 1 s of CPU" in hostile.json()["error"]["message"]
    assert finished["legit"] < finished["hostile"]  # it did not wait for the attack to end
