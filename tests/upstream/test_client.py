"""Unit tests of the upstream client's retry decisions and error mapping (respx)."""

from __future__ import annotations

import httpx
import orjson
import pytest
import respx

from ocrflux.errors import APIError
from ocrflux.settings import Settings
from ocrflux.upstream.client import Upstream
from ocrflux.upstream.errors import retry_after_seconds, upstream_error

URL = "http://vllm.test:30024/v1/chat/completions"
OK = {
    "id": "x",
    "object": "chat.completion",
    "model": "ChatDOC/OCRFlux-3B",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
BODY = b'{"model":"ChatDOC/OCRFlux-3B","messages":[]}'


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(sleeps: Sleeps, **settings: object) -> Upstream:
    defaults: dict[str, object] = {
        "vllm_url": "http://vllm.test",
        "max_retries": 2,
        "retry_backoff": 0.5,
        "retry_backoff_max": 4,
    }
    config = Settings(**{**defaults, **settings})  # type: ignore[arg-type]
    return Upstream(config, sleep=sleeps)


@respx.mock
async def test_retries_503_with_growing_jittered_backoff_then_succeeds() -> None:
    route = respx.post(URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(502), httpx.Response(200, json=OK)]
    )
    sleeps = Sleeps()
    data = await make(sleeps).chat(BODY, "rid")
    assert data["usage"]["total_tokens"] == 4
    assert route.call_count == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    assert route.calls[0].request.headers["x-request-id"] == "rid"


@respx.mock
@pytest.mark.parametrize("status", [500, 501, 507])
async def test_an_upstream_500_reaches_the_client_as_502(status: int) -> None:
    route = respx.post(URL).mock(
        return_value=httpx.Response(
            status, json={"error": {"message": "engine died", "type": "InternalServerError"}}
        )
    )
    with pytest.raises(APIError) as caught:
        await make(Sleeps()).chat(BODY, "rid")
    assert route.call_count == 1
    error = caught.value
    assert (error.status, error.code, error.type) == (502, "upstream_error", "server_error")
    assert error.message == f"the model server failed (HTTP {status}): engine died"


@respx.mock
@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_statuses_are_not_retried(status: int) -> None:
    route = respx.post(URL).mock(
        return_value=httpx.Response(
            status,
            json={
                "error": {
                    "message": "bad thing",
                    "type": "BadRequestError",
                    "param": "max_tokens",
                    "code": status,
                }
            },
        )
    )
    with pytest.raises(APIError) as caught:
        await make(Sleeps()).chat(BODY, "rid")
    assert route.call_count == 1
    assert (caught.value.status, caught.value.message, caught.value.param) == (
        status,
        "bad thing",
        "max_tokens",
    )


@respx.mock
async def test_retry_after_is_waited_for() -> None:
    respx.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "3"}),
            httpx.Response(200, json=OK),
        ]
    )
    sleeps = Sleeps()
    await make(sleeps).chat(BODY, "rid")
    assert sleeps == [3.0]


@respx.mock
async def test_a_long_retry_after_is_not_waited_for() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(429, headers={"retry-after": "600"}))
    with pytest.raises(APIError) as caught:
        await make(Sleeps()).chat(BODY, "rid")
    assert caught.value.status == 429 and route.call_count == 1


@respx.mock
async def test_connection_errors_are_retried_then_503() -> None:
    route = respx.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    sleeps = Sleeps()
    with pytest.raises(APIError) as caught:
        await make(sleeps).chat(BODY, "rid")
    assert route.call_count == 3 and len(sleeps) == 2
    assert caught.value.status == 503


@respx.mock
async def test_connect_timeout_is_retried_but_read_timeout_is_not() -> None:
    route = respx.post(URL).mock(
        side_effect=[httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slower")]
    )
    with pytest.raises(APIError) as caught:
        await make(Sleeps()).chat(BODY, "rid")
    assert route.call_count == 2
    assert caught.value.status == 504


@respx.mock
async def test_body_that_is_not_json_is_502() -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=b"<html>"))
    with pytest.raises(APIError) as caught:
        await make(Sleeps()).chat(BODY, "rid")
    assert caught.value.status == 502


@respx.mock
async def test_max_retries_zero_means_one_attempt() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(503))
    with pytest.raises(APIError):
        await make(Sleeps(), max_retries=0).chat(BODY, "rid")
    assert route.call_count == 1


@respx.mock
async def test_vllm_api_key_is_sent_upstream() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json=OK))
    await make(Sleeps(), vllm_api_key="vk-1").chat(BODY, "rid")
    assert route.calls[0].request.headers["authorization"] == "Bearer vk-1"


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None


def test_both_vllm_error_shapes_are_understood() -> None:
    legacy = orjson.dumps(
        {"object": "error", "message": "m1", "type": "t", "param": None, "code": 400}
    )
    assert upstream_error(400, legacy).message == "m1"
    assert upstream_error(502, b"Bad Gateway").message == "upstream returned HTTP 502: Bad Gateway"
