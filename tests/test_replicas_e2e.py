"""Several fake vLLM replicas behind one gateway: balancing, failover, ejection, readmission,
admission control and /ready, against real processes on loopback."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import FakeVLLMProcess, Process, start_fake_vllm

TEXT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def replicas() -> Iterator[list[FakeVLLMProcess]]:
    fakes = [start_fake_vllm() for _ in range(2)]
    yield fakes
    for fake in fakes:
        fake.stop()


def urls(fakes: list[FakeVLLMProcess]) -> str:
    return ",".join(f.url for f in fakes)


def chat(gateway: Process, **extra: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=TEXT, timeout=30, **extra)


def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def test_calls_spread_over_replicas_and_survive_one_dying(
    make_gateway: Callable[..., Process], replicas: list[FakeVLLMProcess]
) -> None:
    a, b = replicas
    gateway = make_gateway(
        prompt_mode="passthrough",
        vllm_urls=urls(replicas),
        max_retries=1,
        eject_after_failures=2,
        health_check_interval=0.3,
    )
    before = [f.stats()["served"] for f in replicas]
    for _ in range(20):
        assert chat(gateway).status_code == 200
    shares = [f.stats()["served"] - n for f, n in zip(replicas, before, strict=True)]
    assert sum(shares) == 20 and min(shares) >= 4, shares  # both took traffic

    port = a.port
    a.stop()
    for _ in range(10):  # every call succeeds: a failed attempt is retried on b
        assert chat(gateway).status_code == 200
    ready = httpx.get(f"{gateway.url}/ready").json()
    state = {r["url"]: r for r in ready["upstream"]}
    assert state[a.url]["healthy"] is False and state[a.url]["last_error"]
    assert state[b.url]["healthy"] is True and state[b.url]["in_flight"] == 0

    revived = start_fake_vllm(port=port)
    try:
        until(
            lambda: httpx.get(f"{gateway.url}/health").json()["upstream"][0]["healthy"],
            10,  # a health check every 0.3 s; the fake's start-up is slow on a loaded machine
            "the revived replica is readmitted",
        )
        served = revived.stats()["served"]
        for _ in range(10):
            assert chat(gateway).status_code == 200
        assert revived.stats()["served"] - served >= 2  # traffic came back to it
    finally:
        revived.stop()


def test_all_replicas_down_is_a_fast_503_with_retry_after(
    make_gateway: Callable[..., Process], replicas: list[FakeVLLMProcess]
) -> None:
    gateway = make_gateway(
        prompt_mode="passthrough", vllm_urls=urls(replicas), max_retries=1, ready_cache_seconds=0
    )
    for fake in replicas:
        fake.stop()
    statuses = [chat(gateway) for _ in range(6)]
    assert {r.status_code for r in statuses} == {503}
    last = statuses[-1]
    assert last.json()["error"]["code"] == "upstream_unavailable"
    assert int(last.headers["retry-after"]) >= 1
    assert httpx.get(f"{gateway.url}/ready").status_code == 503


def test_beyond_the_queue_is_429_and_a_long_wait_503(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(
        prompt_mode="passthrough", max_concurrent_requests=1, max_queue=1, queue_timeout=0.6
    )
    fake.control(delay=1.0)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: chat(gateway), range(4)))
    statuses = sorted(r.status_code for r in answers)
    # One in flight, one queued (it times out after 0.6 s: 503), two refused at once (429).
    assert statuses == [200, 429, 429, 503], statuses
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    timed_out = next(r for r in answers if r.status_code == 503)
    assert timed_out.json()["error"]["code"] == "queue_timeout"
    assert int(timed_out.headers["retry-after"]) >= 1


def test_ready_checks_are_shared_and_cached(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", ready_cache_seconds=30)
    fake.control(health_delay=0.3)  # concurrent /ready calls overlap one check
    checks = fake.stats()["health_checks"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.get(f"{gateway.url}/ready").status_code, range(40)))
    assert set(codes) == {200}
    assert fake.stats()["health_checks"] - checks <= 1  # 40 calls, one upstream check at most


def test_upstream_urls_can_be_hidden(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", hide_upstream_urls="true")
    for path in ("/health", "/ready"):
        text = httpx.get(f"{gateway.url}{path}").text
        assert "127.0.0.1" not in text and str(fake.port) not in text
        assert '"url":"replica-0"' in text


def test_a_gateway_started_against_a_listing_without_a_list_starts_not_ready(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    # Start-up used to fail: its model check raised on `{"data": null}`.
    fake.control(models_body='{"data": null}')
    gateway = make_gateway(prompt_mode="passthrough", health_check_interval=0.2)
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 503
    assert "without a model list" in ready.json()["upstream"][0]["last_error"]
    fake.control(models_body=None)
    until(lambda: httpx.get(f"{gateway.url}/ready").status_code == 200, 3, "ready once it lists")


def test_a_models_listing_without_a_list_is_a_not_ready_replica_and_the_poller_lives(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", health_check_interval=0.2)
    fake.control(models_body='{"data": null}')
    until(
        lambda: httpx.get(f"{gateway.url}/health").json()["upstream"][0]["healthy"] is False,
        3,
        "the poller notices the broken listing",
    )
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 503
    assert "without a model list" in ready.json()["upstream"][0]["last_error"]
    fake.control(models_body=None)  # the poller is still running and sees it recover
    until(lambda: httpx.get(f"{gateway.url}/ready").status_code == 200, 3, "readmitted")


def test_a_documents_queued_pages_leave_other_clients_their_share_of_the_queue(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    # MAX_CONCURRENT_REQUESTS=2, MAX_QUEUE=2: an 8-page document holds both slots and queues
    # its six other pages; they count once, so a client's text request waits its turn (and
    # gets the next slot by fair share) instead of a 429.
    from tests.documents.pdfs import page_json, text_heavy_pdf

    gateway = make_gateway(max_concurrent_requests=2, max_queue=2, queue_timeout=30)
    fake.control(delay=0.4, capacity=2, answer=page_json("A page."))
    pdf = text_heavy_pdf(pages=8)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        document = pool.submit(
            httpx.post,
            f"{gateway.url}/v1/ocr",
            files={"file": ("doc.pdf", pdf, "application/pdf")},
            data={"skip_cross_page_merge": "true"},
            timeout=60,
        )
        until(lambda: fake.stats()["in_service"] == 2, 20, "the document holds both slots")
        text = chat(gateway)
        assert text.status_code == 200, text.text
        assert not document.done(), "the client was served before the document finished"
        answer = document.result()
    assert answer.status_code == 200, answer.text
    assert answer.json()["num_pages"] == 8 and answer.json()["fallback_pages"] == []


def test_a_stuck_replica_is_retried_around_and_ejected(
    make_gateway: Callable[..., Process], replicas: list[FakeVLLMProcess]
) -> None:
    # It answers /health and /v1/models, never a chat: each attempt on it passes
    # UPSTREAM_ATTEMPT_TIMEOUT, is retried on the other replica, and counts as its failure.
    stuck, good = replicas
    stuck.control(delay=3600)
    good.control(delay=0.5)  # busy enough that the balancer keeps sending calls to both
    gateway = make_gateway(
        prompt_mode="passthrough",
        vllm_urls=urls(replicas),
        upstream_attempt_timeout=1,
        read_timeout=5,
        total_timeout=20,
        eject_after_failures=3,
    )
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(gateway), range(8)))
    took = time.monotonic() - began
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert len(stuck.requests()) >= 3  # it took its share, and timed out each time
    assert took < 5, took  # one attempt deadline and a retry, not READ_TIMEOUT or TOTAL_TIMEOUT
    health = {r["url"]: r for r in httpx.get(f"{gateway.url}/health").json()["upstream"]}
    # Ejected; probed every 2 s, it may be half-open already (its next call a trial).
    assert health[stuck.url]["state"] in ("ejected", "half_open")
    assert health[stuck.url]["ejections"] == 1
    assert (health[good.url]["state"], health[good.url]["ejections"]) == ("healthy", 0)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'ocrflux_replica_ejections_total{{replica="{stuck.url}"}} 1.0' in metrics
    for _ in range(6):  # out of rotation (or one half-open trial): every call still succeeds
        assert chat(gateway).status_code == 200
    assert time.monotonic() - began < 12
    ready = {r["url"]: r for r in httpx.get(f"{gateway.url}/ready").json()["upstream"]}
    assert ready[stuck.url]["last_error"] == "attempt_timeout"


def test_a_replica_answering_garbage_is_retried_around_and_ejected(
    make_gateway: Callable[..., Process], replicas: list[FakeVLLMProcess]
) -> None:
    garbled, good = replicas
    garbled.control(garbage=10_000)  # 200 `<html>not json</html>` to every chat
    gateway = make_gateway(
        prompt_mode="passthrough", vllm_urls=urls(replicas), eject_after_failures=3
    )
    statuses = [chat(gateway).status_code for _ in range(30)]
    assert statuses.count(502) == 0 and statuses == [200] * 30, statuses
    health = {r["url"]: r for r in httpx.get(f"{gateway.url}/health").json()["upstream"]}
    assert health[garbled.url]["ejections"] >= 1
    assert health[good.url]["ejections"] == 0
    ready = {r["url"]: r for r in httpx.get(f"{gateway.url}/ready").json()["upstream"]}
    assert ready[garbled.url]["last_error"] == "bad_response"
