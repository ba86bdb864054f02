"""A call cancelled at any await point of the upstream path leaves the pool whole.

The server runs in the test's own event loop, so stepping the loop one iteration at a time
(`sleep(0)`) walks a call through every await point it has: connecting, writing, waiting for
the head, reading an error body, backing off, retrying, streaming. For each step count k the
call is cancelled after k steps; then no connection, admission slot or in-flight count may be
left behind, and a fresh call must still succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ocrflux.errors import APIError
from ocrflux.settings import Settings
from ocrflux.upstream import LeanTransport, Upstream
from tests.support import free_port

OK = (
    b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
ERROR = b'{"error":{"message":"bad max_tokens","type":"BadRequestError","param":null,"code":400}}'
SSE = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
POOL = 2


def head(status: int, length: int | None = None, extra: bytes = b"") -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n%s\r\n%s\r\n" % (
        status,
        framing,
        extra,
    )


class Scripted:
    """Answers each request with the next script entry, in pieces with loop turns between."""

    def __init__(self, script: list[list[bytes]]) -> None:
        self.script = script
        self.calls = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request_head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                pieces = self.script[self.calls % len(self.script)]
                self.calls += 1
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SCENARIOS: dict[str, list[list[bytes]]] = {
    "ok": [[head(200, len(OK)), OK[:40], OK[40:]]],
    "error_body": [[head(400, len(ERROR)), ERROR[:30], ERROR[30:]]],
    "retry_then_ok": [
        [head(503, len(ERROR), b"retry-after: 0\r\n"), ERROR[:10], ERROR[10:]],
        [head(200, len(OK)), OK],
    ],
    "stream": [[head(200), chunk(SSE[:20]), chunk(SSE[20:]), b"0\r\n\r\n"]],
    "stream_error": [[head(400, len(ERROR)), ERROR[:20], ERROR[20:]]],
}


@pytest.fixture
async def upstream_for() -> AsyncIterator[Callable[[str], Awaitable[Upstream]]]:
    servers: list[asyncio.Server] = []
    made: list[Upstream] = []

    async def make(scenario: str) -> Upstream:
        port = free_port()
        servers.append(await asyncio.start_server(Scripted(SCENARIOS[scenario]), "127.0.0.1", port))
        settings = Settings(
            vllm_url="http://127.0.0.1",
            vllm_port=port,
            max_retries=1,
            retry_backoff=0,
            max_concurrent_requests=POOL,
        )
        upstream = Upstream(settings, transport=LeanTransport(POOL, POOL))
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.aclose()
    for server in servers:
        server.close()


async def call(upstream: Upstream, scenario: str) -> None:
    if not scenario.startswith("stream"):
        await upstream.chat(b"{}", "rid")
        return
    response = await upstream.send(b"{}", "rid")
    try:
        async for _ in response.aiter_raw():
            pass
    finally:
        await response.aclose()


def assert_whole(upstream: Upstream) -> None:
    transport = upstream.lean
    assert transport is not None
    assert transport.busy_connections == 0, "a connection was leaked"
    assert upstream.admission.in_use == 0 and upstream.admission.queued == 0
    assert [r.in_flight for r in upstream.replicas] == [0]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_cancelling_at_every_await_point_leaks_nothing(
    upstream_for: Callable[[str], Awaitable[Upstream]], scenario: str
) -> None:
    upstream = await upstream_for(scenario)
    cancelled_at = []
    for steps in range(400):
        task = asyncio.ensure_future(call(upstream, scenario))
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            break  # the call completes in fewer steps: every await point was covered
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled_at.append(steps)
        except APIError:
            pass  # it had just finished with its (expected) error
        for _ in range(3):  # let closed sockets be noticed
            await asyncio.sleep(0)
        assert_whole(upstream)
    else:
        pytest.fail("the call never completed")
    assert len(cancelled_at) >= 5, cancelled_at  # it really was cut at many points
    if task.exception() is not None:
        assert isinstance(task.exception(), APIError)
    assert_whole(upstream)
    # And the pool still serves: as many calls at once as it has connections.
    results = await asyncio.gather(
        *(call(upstream, scenario) for _ in range(POOL)), return_exceptions=True
    )
    assert all(r is None or isinstance(r, APIError) for r in results), results
    assert_whole(upstream)
