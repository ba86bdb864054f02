"""LeanTransport against tiny loopback servers that answer, stream, stall, break and lie."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from ocrflux.upstream.transport import LeanTransport, Timeouts
from tests.support import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0  # counted by handlers that care

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Server, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[Server, str]:
        server = Server(handler)
        port = free_port()
        servers.append(await asyncio.start_server(server._serve, "127.0.0.1", port))
        return server, f"http://127.0.0.1:{port}"

    yield start
    for s in servers:
        s.close()


def client(**timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=LeanTransport(max_connections=4, max_keepalive=2),
        timeout=httpx.Timeout(**{"timeout": 5.0, **timeouts}),
    )


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        body = await read_request(reader)
        writer.write(answer(b"got " + body))
        await writer.drain()


async def test_requests_reuse_one_keep_alive_connection(serve) -> None:
    server, url = await serve(echo_forever)
    async with client() as c:
        for n in range(3):
            response = await c.post(url + "/x", content=b"%d" % n)
            assert response.status_code == 200
            assert response.content == b"got %d" % n
    assert server.connections == 1


async def test_large_body_goes_out_whole(serve) -> None:
    _, url = await serve(echo_forever)
    body = bytes(range(256)) * 8192  # 2 MB: sent with writelines and flow control
    async with client() as c:
        response = await c.post(url, content=body)
    assert response.content == b"got " + body


async def test_chunked_stream_arrives_piece_by_piece(serve) -> None:
    release = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    _, url = await serve(stream)
    async with client() as c, c.stream("POST", url, content=b"{}") as response:
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"first"  # before the server sends the rest
        release.set()
        assert [p async for p in pieces] == [b"second"]


async def test_connection_closed_without_an_answer_is_retryable(serve) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    _, url = await serve(drop)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(url, content=b"{}")


async def test_stream_broken_midway_raises_read_error(serve) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    _, url = await serve(half)
    async with client() as c:
        with pytest.raises(httpx.ReadError):
            await c.post(url, content=b"{}")


async def test_garbage_is_a_protocol_error(serve) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"<html>not http</html>\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    _, url = await serve(garbage)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(url, content=b"{}")


async def test_silence_is_a_read_timeout(serve) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    _, url = await serve(stall)
    async with client(read=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(url, content=b"{}")


async def test_nothing_listening_is_a_connect_error() -> None:
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")


async def test_idle_connection_the_client_saw_closed_is_replaced_without_a_resend(serve) -> None:
    closed = asyncio.Event()

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        server.requests += 1
        writer.write(answer(b"ok"))  # keep-alive promised, then closed anyway
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    server, url = await serve(one_then_close)
    transport = LeanTransport(max_connections=4, max_keepalive=2)
    async with httpx.AsyncClient(transport=transport, timeout=5) as c:
        assert (await c.post(url, content=b"{}")).content == b"ok"
        await closed.wait()
        for _ in range(1000):  # loop turns (not time) until the client has read the FIN
            if all(conn.closed for idle in transport._idle.values() for conn in idle):
                break
            await asyncio.sleep(0)
        assert transport.idle_connections == 1  # still listed, known dead
        assert (await c.post(url, content=b"{}")).content == b"ok"
    # Found dead when taken from the idle list: a new connection, nothing sent twice.
    assert (server.connections, server.requests, transport.stale_retries) == (2, 2, 0)


async def test_idle_connection_closed_as_it_is_reused_gets_the_request_once_more(serve) -> None:
    async def close_on_the_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        server.requests += 1
        if server.connections == 1:
            writer.write(answer(b"first"))
            await writer.drain()
            await read_request(reader)  # the reused connection's request: closed unanswered
            server.requests += 1
            return
        writer.write(answer(b"second"))
        await writer.drain()

    server, url = await serve(close_on_the_second)
    transport = LeanTransport(max_connections=4, max_keepalive=2)
    async with httpx.AsyncClient(transport=transport, timeout=5) as c:
        assert (await c.post(url, content=b"{}")).content == b"first"
        assert (await c.post(url, content=b"{}")).content == b"second"
    # Nothing came back on the reused connection: the request is sent again, once.
    assert (server.connections, server.requests, transport.stale_retries) == (2, 3, 1)


@pytest.mark.parametrize("path", ["httpx", "roundtrip"])
async def test_when_every_idle_connection_died_the_second_try_opens_a_fresh_one(
    serve, path: str
) -> None:
    # A replica killed and restarted under load leaves several idle connections that look
    # alive. The retry used to take the next dead one and end in AssertionError (a 500).
    both = asyncio.Event()

    async def two_then_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = server.connections
        await read_request(reader)
        server.requests += 1
        if n <= 2:
            if n == 2:
                both.set()
            await both.wait()  # hold both answers so the two requests take two connections
            writer.write(answer(b"first"))
            await writer.drain()
            await read_request(reader)  # reused after the "restart": closed unanswered
            server.requests += 1
            return
        writer.write(answer(b"fresh"))
        await writer.drain()

    server, url = await serve(two_then_gone)
    transport = LeanTransport(max_connections=4, max_keepalive=2)
    port = int(url.rsplit(":", 1)[1])
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n"
    timeouts = Timeouts(5, 5, 5, 5)

    async def post(c: httpx.AsyncClient) -> bytes:
        if path == "httpx":
            return (await c.post(url, content=b"{}")).content
        return (await transport.roundtrip("127.0.0.1", port, head, b"{}", timeouts, 1000))[2]

    async with httpx.AsyncClient(transport=transport, timeout=5) as c:
        assert await asyncio.gather(post(c), post(c)) == [b"first", b"first"]
        assert transport.idle_connections == 2
        assert await post(c) == b"fresh"
    # One dead connection costs one resend; its idle sibling is dropped, not tried.
    assert (server.connections, server.requests, transport.stale_retries) == (3, 4, 1)


@pytest.mark.parametrize("partial", [b"HTTP/1.1 2", b"HTTP/1.1 200 OK\r\ncontent-le"])
async def test_a_reused_connection_that_started_answering_is_not_sent_again(
    serve, partial: bytes
) -> None:
    async def answer_then_break(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        server.requests += 1
        writer.write(answer(b"first"))
        await writer.drain()
        await read_request(reader)
        server.requests += 1
        writer.write(partial)  # the upstream has the request and began to answer ...
        await writer.drain()  # ... then the connection breaks

    server, url = await serve(answer_then_break)
    transport = LeanTransport(max_connections=4, max_keepalive=2)
    async with httpx.AsyncClient(transport=transport, timeout=5) as c:
        assert (await c.post(url, content=b"{}")).content == b"first"
        with pytest.raises(httpx.TransportError):
            await c.post(url, content=b"{}")
        # The hot path (`roundtrip`) makes the same decision.
        port = int(url.rsplit(":", 1)[1])
        head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n"
        timeouts = Timeouts(5, 5, 5, 5)
        assert (await transport.roundtrip("127.0.0.1", port, head, b"{}", timeouts, 1000))[2] == (
            b"first"
        )
        with pytest.raises(httpx.TransportError):
            await transport.roundtrip("127.0.0.1", port, head, b"{}", timeouts, 1000)
    assert (server.requests, transport.stale_retries) == (4, 0)  # each sent exactly once


async def test_closing_a_stream_early_closes_its_connection(serve) -> None:
    gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(200):
                writer.write(b"4\r\ndata\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            gone.set()

    _, url = await serve(endless)
    async with client() as c, c.stream("POST", url, content=b"{}") as response:
        assert await anext(response.aiter_raw())
    await asyncio.wait_for(gone.wait(), 3)  # the upstream learns the client went away


async def test_pool_limit_waits_then_times_out(serve) -> None:
    held: list[asyncio.Event] = []
    all_held, third_arrived = asyncio.Event(), asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            server.requests += 1
            release = asyncio.Event()
            held.append(release)
            if len(held) == 2:
                all_held.set()
            if len(held) == 3:
                third_arrived.set()
            await release.wait()
            writer.write(answer(b"late"))
            await writer.drain()

    server, url = await serve(hold)
    transport = LeanTransport(max_connections=2, max_keepalive=2)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=0.2)) as c:
        busy = [asyncio.ensure_future(c.post(url, content=b"{}")) for _ in range(2)]
        await all_held.wait()  # both connections are taken, their requests held
        assert transport.free_slots == 0
        with pytest.raises(httpx.PoolTimeout):
            await c.post(url, content=b"{}")
        assert server.connections == 2  # it waited for a slot; it never connected
        waiter = asyncio.ensure_future(c.post(url, content=b"{}", timeout=httpx.Timeout(5)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiter.done()  # still waiting for a free connection
        held[0].set()  # one held request is answered: its connection comes free
        assert (await busy[0]).content == b"late"
        await third_arrived.wait()  # the waiter's request reached the server on that connection
        held[2].set()
        assert (await waiter).content == b"late"
        held[1].set()
        assert (await busy[1]).content == b"late"
    assert (server.connections, server.requests) == (2, 3)


async def test_a_full_pool_of_idle_connections_makes_room_for_another_origin(serve) -> None:
    a, url_a = await serve(echo_forever)
    b, url_b = await serve(echo_forever)
    transport = LeanTransport(max_connections=1, max_keepalive=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=1)) as c:
        assert (await c.post(url_a, content=b"a")).content == b"got a"
        assert transport.idle_connections == 1 and transport.free_slots == 0
        # One replica's idle connection must not lock every other replica out of the pool.
        assert (await c.post(url_b, content=b"b")).content == b"got b"
        assert (await c.post(url_a, content=b"a")).content == b"got a"
    assert (a.connections, b.connections) == (2, 1)
