"""Documents against the real vLLM: a PDF through /v1/ocr, and the merge prompts as vLLM takes them.

The tiny model answers noise, so every page falls back: the document must still come back
well-formed (Mistral's shape, fallback pages listed, usage summed), never a 500. The merge
prompts cannot be reached through readable pages here, so they are sent to the real server by
the engine itself: vLLM must accept their text-first, 28x28-image form.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import httpx
import pytest

from ocrflux.engines.base import PageJob
from ocrflux.engines.vllm_merge import MergeAsker
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream
from tests.documents.pdfs import Page, make_pdf
from tests.real_vllm.conftest import REQUEST_TIMEOUT
from tests.real_vllm.helpers import RecordingProxy
from tests.real_vllm.vllm_server import RealVLLM
from tests.support import Process

pytestmark = pytest.mark.real_vllm


@pytest.fixture
def proxy(vllm: RealVLLM) -> Iterator[RecordingProxy]:
    with RecordingProxy(vllm.url) as recorder:
        yield recorder


def test_a_three_page_pdf_comes_back_well_formed_with_its_fallback_pages(
    make_gateway: Callable[..., Process], proxy: RecordingProxy
) -> None:
    gateway = make_gateway(
        upstream_port=proxy.port, page_retries=1, page_max_tokens=24, max_retries=0
    )
    proxy.clear()
    pdf = make_pdf([Page(612, 792, (f"# Page {n}", "Some text.")) for n in range(3)])
    url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    response = httpx.post(
        f"{gateway.url}/v1/ocr",
        json={"model": "mistral-ocr-latest", "document": {"type": "document_url",
              "document_url": url}},
        timeout=REQUEST_TIMEOUT,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "mistral-ocr-latest"
    assert [p["index"] for p in body["pages"]] == [0, 1, 2]
    assert all(p["dimensions"] == {"dpi": 93, "height": 1024, "width": 791} for p in body["pages"])
    assert body["num_pages"] == 3
    assert body["fallback_pages"] == [0, 1, 2]  # noise is never page JSON
    assert body["document_text"] == "" and body["page_texts"] == {}
    calls = proxy.chat_calls()
    assert len(calls) == 3 * 2  # each page asked twice (PAGE_RETRIES=1), no merge calls
    assert all(call.status == 200 for call in calls)
    images = [call.request["messages"][0]["content"][1] for call in calls]
    assert all(part["type"] == "image_url" for part in images)
    assert body["usage"]["total_tokens"] == sum(
        call.response["usage"]["total_tokens"] for call in calls
    )


async def test_vllm_accepts_the_merge_prompts_as_the_engine_sends_them(vllm: RealVLLM) -> None:
    settings = Settings(
        vllm_url="http://127.0.0.1",
        vllm_port=vllm.port,
        max_model_len=vllm.max_model_len,
        page_retries=0,
        max_retries=0,
        health_check_interval=0,
    )
    upstream = Upstream(settings)
    try:
        asker = MergeAsker(settings, upstream)
        job = PageJob("real-vllm-merge")
        detect = await asker.detect_merges(["The results of the experi-"], ["ment."], job)
        table = "<table><tr><td>1</td></tr></table>"
        merged = await asker.merge_tables(table, table, job)
    finally:
        await upstream.aclose()
    # vLLM answered both (usage counted: the calls were accepted, text first with the 28x28
    # image); its noise is neither a pair list nor a table, which means "no merge".
    assert detect.usage.prompt_tokens > 0 and detect.pairs == []
    assert merged.usage.prompt_tokens > 0 and merged.table is None
