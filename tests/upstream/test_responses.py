"""Whatever the upstream answers, the client gets a clean error: odd statuses, wrong shapes,
oversized bodies, and a full pool named as such. Both transports (the lean hot path and
httpx's own) against a raw loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import orjson
import pytest

from ocrflux.errors import APIError
from ocrflux.settings import Settings
from ocrflux.upstream import LeanTransport, Upstream
from tests.support import free_port

Make = Callable[[bytes], Awaitable[Upstream]]


def completion(**changes: object) -> bytes:
    body: dict[str, object] = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    body.update(changes)
    return orjson.dumps(body)


def answer(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)


@pytest.fixture(params=["lean", "httpx"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    servers: list[asyncio.Server] = []
    made: list[Upstream] = []

    async def start(raw: bytes) -> Upstream:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(raw)
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        port = free_port()
        servers.append(await asyncio.start_server(handle, "127.0.0.1", port))
        settings = Settings(
            vllm_url="http://127.0.0.1", vllm_port=port, max_retries=0, max_upstream_body_bytes=4096
        )
        transport = LeanTransport() if request.param == "lean" else None
        upstream = Upstream(settings, transport=transport)
        made.append(upstream)
        return upstream

    yield start
    for upstream in made:
        await upstream.aclose()
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b'{"choices":[1]}', "choices[0]"),
        (completion(choices=[{"message": "str"}]), "choices[0].message"),
        (completion(choices=[{"message": {"content": 5}}]), "content"),
        (completion(choices=[{"message": {"content": "x"}, "finish_reason": 3}]), "finish_reason"),
        (completion(usage={"prompt_tokens": "abc"}), "usage.prompt_tokens"),
        (completion(usage={"completion_tokens": -1}), "usage.completion_tokens"),
        (completion(usage=[1]), "usage"),
        (completion(choices={"0": {}}), "choices"),
        (b"[1, 2]", "JSON object"),
        (b"<html>", "not JSON"),
    ],
)
async def test_unexpected_bodies_are_502_bad_response(make: Make, body: bytes, what: str) -> None:
    upstream = await make(answer(body))
    with pytest.raises(APIError) as caught:
        await upstream.chat(b"{}", "rid")
    assert caught.value.status == 502
    assert caught.value.code == "upstream_bad_response"
    assert what in caught.value.message


async def test_a_well_formed_body_passes(make: Make) -> None:
    upstream = await make(answer(completion(usage=None)))
    data = await upstream.chat(b"{}", "rid")
    assert data["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize("status", [600, 999, 302, 204 + 100])
async def test_statuses_outside_the_usable_range_are_502(make: Make, status: int) -> None:
    upstream = await make(answer(b'{"error": "weird"}', status))
    with pytest.raises(APIError) as caught:
        await upstream.chat(b"{}", "rid")
    assert (caught.value.status, caught.value.code) == (502, "upstream_bad_response")
    assert str(status) in caught.value.message


async def test_a_body_over_the_cap_is_502(make: Make) -> None:
    upstream = await make(answer(completion(id="x" * 5000)))
    with pytest.raises(APIError) as caught:
        await upstream.chat(b"{}", "rid")
    assert caught.value.status == 502 and "MAX_UPSTREAM_BODY_BYTES" in caught.value.message


async def test_a_chunked_body_over_the_cap_is_502(make: Make) -> None:
    chunk = b"x" * 1000
    raw = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 6
        + b"0\r\n\r\n"
    )
    upstream = await make(raw)
    with pytest.raises(APIError) as caught:
        await upstream.chat(b"{}", "rid")
    assert caught.value.status == 502 and "MAX_UPSTREAM_BODY_BYTES" in caught.value.message


async def test_a_full_pool_is_named_as_such_not_as_a_slow_model_server() -> None:
    respond, arrived = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        await respond.wait()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(slow, "127.0.0.1", port)
    settings = Settings(
        vllm_url="http://127.0.0.1", vllm_port=port, max_retries=0, connect_timeout=0.2
    )
    upstream = Upstream(settings, transport=LeanTransport(max_connections=1))
    try:
        first = asyncio.ensure_future(upstream.chat(b"{}", "a"))
        await arrived.wait()  # the only connection is taken
        with pytest.raises(APIError) as caught:
            await upstream.chat(b"{}", "b")
        assert caught.value.status == 503
        assert caught.value.code == "upstream_pool_timeout"
        assert "connection pool is full" in caught.value.message
        assert "timed out" not in caught.value.message
        # A full pool says nothing about the replica: it stays healthy.
        assert all(r.healthy and r.failures == 0 for r in upstream.replicas)
    finally:
        respond.set()
        await asyncio.gather(first, return_exceptions=True)
        await upstream.aclose()
        server.close()


async def test_a_pool_timeout_from_httpx_transports_is_named_the_same_way() -> None:
    settings = Settings(vllm_url="http://vllm.test", max_retries=2)
    transport = httpx.MockTransport(lambda request: (_ for _ in ()).throw(httpx.PoolTimeout("x")))
    upstream = Upstream(settings, transport=transport)
    with pytest.raises(APIError) as caught:
        await upstream.chat(b"{}", "rid")
    assert caught.value.code == "upstream_pool_timeout"
    await upstream.aclose()
