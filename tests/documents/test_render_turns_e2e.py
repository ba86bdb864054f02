"""A hostile document beside a legit one through `/v1/ocr`: the hostile pages cost their own
document alone (issue 18 item 2). Bounded: the hostile pages are ended at a small budget."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.documents.pdfs import Page, hostile_pdf, make_pdf, page_json
from tests.documents.test_ocr_e2e import document, ocr
from tests.support import FakeVLLMProcess

BUDGET = 3.0  # RENDER_PAGE_CPU_SECONDS: each hostile page is ended after 3 s of drawing


def test_a_legit_document_is_read_while_a_hostile_one_burns_its_pages(
    make_gateway: Any, fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(render_workers=2, render_page_cpu_seconds=BUDGET)
    pages = [Page(600, 800, ("Legit page one.",)), Page(610, 800, ("Legit page two.",))]
    fake.control(page_answers={p.key(): [page_json(f"page {i}")] for i, p in enumerate(pages)})
    hostile: dict[str, Any] = {}

    def attack() -> None:
        # 3 pages of 2M strokes (~100 KB): pdfium would draw each for minutes.
        body = document(hostile_pdf(pages=3), skip_cross_page_merge=True)
        response = httpx.post(f"{gateway.url}/v1/ocr", json=body, timeout=120)
        hostile["status"], hostile["error"] = response.status_code, response.json()["error"]

    thread = threading.Thread(target=attack)
    thread.start()
    time.sleep(1.0)  # opened: both of its first pages are drawing, its third waits
    started = time.monotonic()
    legit = ocr(gateway, document(make_pdf(pages), skip_cross_page_merge=True))
    took = time.monotonic() - started
    rendering = thread.is_alive()
    thread.join(120)
    assert legit.status_code == 200, legit.text
    assert [p["markdown"] for p in legit.json()["pages"]] == ["page 0", "page 1"]
    # Alone it takes ~0.2 s. Before, its pages queued behind the hostile ones until their
    # workers were ended (a budget each, then again one at a time under an isolation lock).
    assert rendering, "the hostile document was not rendering any more"
    assert took < BUDGET, f"the legit document took {took:.1f} s"
    assert hostile["status"] == 400
    assert hostile["error"]["message"].endswith(
        f"page 0 could not be rendered: it needs more than {BUDGET:g} s of CPU or stops the "
        "renderer"
    )
