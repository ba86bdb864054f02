"""Load suite (e): a hostile document beside a legit one (issue 18 item 2).

A 2-page PDF is read over and over by one client, alone, then while a document of 3 pages
that each burn the whole render budget (2M strokes) is being rendered. Its time beside the
attack must stay within 2x its time alone (p50): the hostile pages cost their own document.
Bounded: RENDER_PAGE_CPU_SECONDS=4 ends each hostile page (~40 s on a busy 2-core machine).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.documents.pdfs import Page, hostile_pdf, make_pdf
from tests.load.client import closed_loop
from tests.load.test_load import PAGE_ANSWER, gateway, replicas, row

pytestmark = pytest.mark.load

BUDGET = 4.0


def ocr_body(pdf: bytes) -> bytes:
    url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    return orjson.dumps(
        {"document": {"type": "document_url", "document_url": url}, "skip_cross_page_merge": True}
    )


def test_f_a_hostile_document_beside_a_legit_one() -> None:
    legit = ocr_body(make_pdf([Page(612, 792, ("Legit page one.",)), Page(612, 792, ("Two.",))]))
    with (
        replicas(1, delay=0.05, answer=PAGE_ANSWER) as fakes,
        gateway(
            fakes, prompt_mode="ocrflux", render_workers=2, render_page_cpu_seconds=BUDGET
        ) as gw,
    ):
        url = gw.url + "/v1/ocr"
        asyncio.run(closed_loop(url, legit, clients=1, seconds=1))  # warm-up
        alone = asyncio.run(closed_loop(url, legit, clients=1, seconds=3))
        hostile: dict[str, Any] = {}

        def attack() -> None:
            started = time.monotonic()
            response = httpx.post(url, content=ocr_body(hostile_pdf(pages=3)), timeout=300,
                                  headers={"content-type": "application/json"})  # fmt: skip
            hostile["status"] = response.status_code
            hostile["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=attack)
        thread.start()
        time.sleep(0.5)  # its first two pages are drawing
        beside = asyncio.run(closed_loop(url, legit, clients=1, seconds=3))
        overlapped = thread.is_alive()
        thread.join(300)

    p50_alone, p50_beside = alone.latency_ms(0.5), beside.latency_ms(0.5)
    row("f: a 2-page PDF alone", alone, "1 client, one after another; RENDER_WORKERS=2")
    row(
        "f: the same beside a hostile document",
        beside,
        f"p50 {p50_beside / p50_alone:.2f}x alone (bound 2x); the hostile document (3 pages "
        f"of 2M strokes, RENDER_PAGE_CPU_SECONDS={BUDGET:g}): {hostile.get('status')} in "
        f"{hostile.get('seconds', 0):.1f} s",
    )
    assert overlapped, "the hostile document was done before the legit ones were measured"
    assert alone.statuses() == {200: len(alone.answers)}
    assert beside.statuses() == {200: len(beside.answers)}
    assert hostile["status"] == 400
    assert p50_beside <= 2 * p50_alone, (p50_alone, p50_beside)
