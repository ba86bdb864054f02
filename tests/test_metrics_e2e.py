"""GET /metrics, parsed with prometheus_client's own parser, moves as requests go through."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ocrflux.settings import Settings
from tests.documents.pdfs import Page, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHAT = "/v1/chat/completions"
PAGE_JSON = page_json("# A page\n\nSome text.")


def scrape(gateway: Process, **headers: str) -> Samples:
    response = httpx.get(f"{gateway.url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def page_request(n: int) -> dict[str, object]:
    buffer = io.BytesIO()
    Image.new("RGB", (600, 800), "white").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    parts = [{"type": "image_url", "image_url": {"url": url}} for _ in range(n)]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def test_series_move_as_requests_go_through(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="ocrflux", max_retries=1)
    replica = fake.url
    before = scrape(gateway)
    text = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert httpx.post(gateway.url + CHAT, json=text, timeout=30).status_code == 200
    fake.control(fail=[503])  # one retried attempt
    assert httpx.post(gateway.url + CHAT, json=text, timeout=30).status_code == 200
    fake.control(answer="not page JSON")  # three pages, each a fallback after its re-asks
    pages = httpx.post(gateway.url + CHAT, json=page_request(3), timeout=30)
    assert pages.status_code == 200
    assert httpx.post(gateway.url + CHAT, content=b"{", timeout=30).status_code == 400
    after = scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ocrflux_requests_total", route=CHAT, status="200") == 5
    assert moved("ocrflux_requests_total", route=CHAT, status="400") == 1
    assert moved("ocrflux_request_duration_seconds_count", route=CHAT) == 6
    assert moved("ocrflux_request_bytes_total", route=CHAT) > 3 * len(str(text))
    assert moved("ocrflux_response_bytes_total", route=CHAT) > 0
    # 4 text calls + 1 retry; 3 pages x (1 + PAGE_RETRIES re-asks)
    page_calls = 3 * (1 + Settings().page_retries)
    assert moved("ocrflux_upstream_attempts_total", replica=replica) == 5 + page_calls
    assert moved("ocrflux_upstream_retries_total", replica=replica) == 1
    assert moved("ocrflux_upstream_errors_total", replica=replica, kind="status_503") == 1
    assert moved("ocrflux_upstream_duration_seconds_count", replica=replica) == 5 + page_calls
    assert moved("ocrflux_images_total") == 3
    assert moved("ocrflux_pages_total", engine="vllm") == 3
    assert moved("ocrflux_fallback_pages_total", engine="vllm") == 3
    assert value(after, "ocrflux_replica_healthy", replica=replica) == 1
    assert value(after, "ocrflux_replica_in_flight", replica=replica) == 0
    assert value(after, "ocrflux_upstream_in_flight") == 0
    assert value(after, "ocrflux_upstream_slots") == 64
    assert value(after, "ocrflux_queue_depth") == 0
    assert ("ocrflux_queue_wait_seconds_count", ()) in after


def test_metrics_can_require_a_key(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", metrics_api_key="scrape-me")
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    wrong = httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer scrape-me-not"})
    assert wrong.status_code == 401
    assert scrape(gateway, authorization="Bearer scrape-me")


def test_documents_are_counted_by_outcome(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="ocrflux")
    fake.control(answer=PAGE_JSON)
    pdf = base64.b64encode(make_pdf([Page(), Page()])).decode()
    body = {
        "model": "m",
        "document": {"type": "document_url", "document_url": f"data:application/pdf;base64,{pdf}"},
    }
    before = scrape(gateway)
    assert httpx.post(f"{gateway.url}/v1/ocr", json=body, timeout=60).status_code == 200
    after = scrape(gateway)
    assert (
        value(after, "ocrflux_documents_total", outcome="ok")
        - value(before, "ocrflux_documents_total", outcome="ok")
        == 1
    )
    assert (
        value(after, "ocrflux_pages_total", engine="vllm")
        - value(before, "ocrflux_pages_total", engine="vllm")
        == 2
    )
