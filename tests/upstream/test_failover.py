"""Failing over between replicas (respx): a stuck replica and one answering garbage are
retried around, counted as replica failures and ejected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import pytest
import respx

from ocrflux.errors import APIError
from ocrflux.settings import Settings
from ocrflux.upstream.client import Upstream
from ocrflux.upstream.replicas import Replica, State

A = "http://a.test:1"
B = "http://b.test:2"
OK = {
    "id": "x",
    "object": "chat.completion",
    "model": "ChatDOC/OCRFlux-3B",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
BODY = b'{"model":"ChatDOC/OCRFlux-3B","messages":[]}'


async def no_sleep(seconds: float) -> None:
    return None


class Hang:
    """A replica that takes a call and stays silent (respx counts only calls that ended)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(5)  # stuck, as far as a 0.2 s attempt deadline can tell
        return httpx.Response(200, json=OK)


def make(urls: Sequence[str] = (A, B), **settings: object) -> Upstream:
    defaults: dict[str, object] = {
        "vllm_urls": ",".join(urls),
        "max_retries": 1,
        "upstream_attempt_timeout": 0.2,
        "eject_after_failures": 2,
    }
    upstream = Upstream(Settings(**{**defaults, **settings}), sleep=no_sleep)  # type: ignore[arg-type]

    def first(ties: Sequence[Replica]) -> Replica:
        return ties[0]  # ties go to A: the bad replica is always tried first

    upstream.replicas._choice = first
    return upstream


def replica(upstream: Upstream, url: str) -> Replica:
    return next(r for r in upstream.replicas if r.base_url == url)


@respx.mock
async def test_an_attempt_past_its_deadline_is_retried_on_another_replica() -> None:
    stuck = Hang()
    respx.post(f"{A}/v1/chat/completions").mock(side_effect=stuck)
    good = respx.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=OK))
    upstream = make()
    began = time.monotonic()
    data = await upstream.chat(BODY, "rid")
    assert time.monotonic() - began < 2.0
    assert data["choices"][0]["message"]["content"] == "hi"
    assert (stuck.calls, good.call_count) == (1, 1)
    a = replica(upstream, A)
    assert (a.failures, a.in_flight, a.state) == (1, 0, State.HEALTHY)
    assert a.last_error == "attempt_timeout"


@respx.mock
async def test_timeouts_eject_a_stuck_replica() -> None:
    stuck = Hang()
    respx.post(f"{A}/v1/chat/completions").mock(side_effect=stuck)
    respx.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=OK))
    upstream = make()
    for _ in range(4):
        await upstream.chat(BODY, "rid")
    assert stuck.calls == 2  # two timeouts (EJECT_AFTER_FAILURES=2), then no more calls
    a = replica(upstream, A)
    assert (a.state, a.ejections) == (State.EJECTED, 1)


@respx.mock
async def test_a_read_timeout_is_retried_on_another_replica() -> None:
    respx.post(f"{A}/v1/chat/completions").mock(side_effect=httpx.ReadTimeout("silence"))
    good = respx.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=OK))
    await make().chat(BODY, "rid")
    assert good.call_count == 1


@respx.mock
async def test_with_no_other_replica_a_timeout_is_a_504_at_once() -> None:
    stuck = Hang()
    respx.post(f"{A}/v1/chat/completions").mock(side_effect=stuck)
    began = time.monotonic()
    with pytest.raises(APIError) as caught:
        await make([A], max_retries=3).chat(BODY, "rid")
    assert time.monotonic() - began < 1.0
    assert stuck.calls == 1  # the same stuck replica is not asked again
    error = caught.value
    assert (error.status, error.code) == (504, "upstream_timeout")
    assert "UPSTREAM_ATTEMPT_TIMEOUT" in error.message


@respx.mock
async def test_a_stream_whose_head_never_comes_is_retried_on_another_replica() -> None:
    respx.post(f"{A}/v1/chat/completions").mock(side_effect=Hang())
    respx.post(f"{B}/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=b"data: [DONE]\n\n")
    )
    upstream = make()
    response = await upstream.send(BODY, "rid")
    try:
        assert await response.aread() == b"data: [DONE]\n\n"
    finally:
        await response.aclose()
    assert replica(upstream, A).failures == 1


@respx.mock
@pytest.mark.parametrize(
    "garbage",
    [
        httpx.Response(200, content=b"<html>not json</html>"),
        httpx.Response(200, json={"choices": 5}),
        httpx.Response(200, json=[1, 2]),
    ],
)
async def test_a_garbage_answer_is_retried_on_another_replica_and_ejects_it(
    garbage: httpx.Response,
) -> None:
    bad = respx.post(f"{A}/v1/chat/completions").mock(return_value=garbage)
    good = respx.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=OK))
    upstream = make()
    for _ in range(4):
        data = await upstream.chat(BODY, "rid")
        assert data["usage"]["total_tokens"] == 4
    assert (bad.call_count, good.call_count) == (2, 4)
    a = replica(upstream, A)
    assert (a.state, a.last_error) == (State.EJECTED, "bad_response")


@respx.mock
async def test_garbage_from_the_only_replica_is_still_a_502() -> None:
    bad = respx.post(f"{A}/v1/chat/completions").mock(
        return_value=httpx.Response(200, content=b"<html>")
    )
    with pytest.raises(APIError) as caught:
        await make([A], max_retries=2).chat(BODY, "rid")
    assert bad.call_count == 1
    assert (caught.value.status, caught.value.code) == (502, "upstream_bad_response")
