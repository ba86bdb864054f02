"""A lean HTTP/1.1 transport for httpx: the gateway's hot path to vLLM.

httpcore (httpx's default) costs ~1.1 ms of CPU per request here and ~2.2 ms at 16 concurrent
connections (every request scans the whole pool and polls each idle socket). This transport
keeps httpx's API, timeouts and exception types (the retry logic relies on them) but speaks
HTTP/1.1 itself over asyncio protocols with httptools' C parser (already used by uvicorn).
Plain `http://` only; anything else goes to httpx's own transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import httpx

from ocrflux.upstream.connection import Connection


class _Body(httpx.AsyncByteStream):
    def __init__(self, pool: LeanTransport, conn: Connection, read_timeout: float | None):
        self._pool = pool
        self._conn = conn
        self._timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (data := await self._conn.next_chunk(self._timeout)) is not None:
            yield data

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._conn)


class BodyTooLarge(httpx.TransportError):
    """The response body is over the caller's limit (the connection was closed)."""


class Timeouts(NamedTuple):
    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


class LeanTransport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 keep-alive connections to plain-HTTP origins.

    Two ways in: httpx's (`handle_async_request`, used for streams and by any httpx client)
    and `roundtrip`, a whole request and response as bytes without any httpx object, which is
    what non-streaming calls on the hot path use.
    """

    def __init__(self, max_connections: int = 256, max_keepalive: int = 64) -> None:
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self.max_connections = max_connections
        self._free = max_connections  # slots: connections that may still be opened
        self._waiters: list[asyncio.Future[None]] = []
        self._max_keepalive = max_keepalive
        self._fallback: httpx.AsyncHTTPTransport | None = None
        self._closed = False
        # Requests sent again because a reused idle connection turned out to be dead.
        self.stale_retries = 0

    @property
    def free_slots(self) -> int:
        """Connections that could still be opened."""
        return self._free

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    @property
    def busy_connections(self) -> int:
        """Connections neither idle nor free: in use by a request, or leaked if none runs."""
        return self.max_connections - self.free_slots - self.idle_connections

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            if self._fallback is None:
                self._fallback = httpx.AsyncHTTPTransport()
            return await self._fallback.handle_async_request(request)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        target = url.raw_path.decode("ascii")
        lines = [f"{request.method} {target} HTTP/1.1".encode()]
        lines += [name + b": " + value for name, value in request.headers.raw]
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        conn = await self._open(
            (url.host, url.port or 80),
            head,
            body,
            Timeouts(
                timeouts.get("connect"),
                timeouts.get("read"),
                timeouts.get("write"),
                timeouts.get("pool"),
            ),
        )
        stream = _Body(self, conn, timeouts.get("read"))
        return httpx.Response(
            conn.parser.get_status_code(),
            headers=conn.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def roundtrip(
        self, host: str, port: int, head: bytes, body: bytes, timeouts: Timeouts, limit: int
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send `head` (complete, ending in a blank line) and `body`; read the whole answer.

        Raises httpx's exception types, and `BodyTooLarge` past `limit` bytes of body.
        """
        conn = await self._open((host, port), head, body, timeouts)
        try:
            parts: list[bytes] = []
            size = 0
            while (data := await conn.next_chunk(timeouts.read)) is not None:
                size += len(data)
                if size > limit:
                    raise BodyTooLarge(f"response body over {limit} bytes")
                parts.append(data)
        except BaseException:
            self._discard(conn)
            raise
        status, headers = conn.parser.get_status_code(), conn.headers
        self.release(conn)
        return status, headers, parts[0] if len(parts) == 1 else b"".join(parts)

    async def _open(
        self, key: tuple[str, int], head: bytes, body: bytes, timeouts: Timeouts
    ) -> Connection:
        """A connection on which `head` and `body` went out and the response head arrived.

        A reused idle connection that turns out dead gets the request once more, on a new
        connection: its idle siblings went through the same restart or timeout, so they are
        closed rather than tried one after another.
        """
        for may_resend in (True, False):
            conn = await self._acquire(key, timeouts)
            try:
                await conn.send(head, body, timeouts.write)
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(timeouts.read)
            except httpx.TransportError as exc:
                # Only a connection that was reused and on which nothing at all arrived: once
                # the upstream started answering, it has the request and must not get it twice.
                stale = conn.reused and not conn.received_any
                self._discard(conn)
                if may_resend and stale and not isinstance(exc, httpx.TimeoutException):
                    self.stale_retries += 1
                    self._drop_idle(key)
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, key: tuple[str, int], timeouts: Timeouts) -> Connection:
        """An idle connection to `key`, or a new one once the pool has room.

        Waiting for room ends when a slot frees *or* a connection goes idle: an idle one to
        `key` is taken, an idle one to another origin is closed to make room.
        """
        try:
            async with asyncio.timeout(timeouts.pool):
                while True:
                    conn = self._take_idle(key)
                    if conn is not None:
                        return conn
                    if self._free > 0 or self._evict_idle():
                        self._free -= 1
                        break
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
        except TimeoutError:
            raise httpx.PoolTimeout("no free upstream connection in time") from None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeouts.connect):
                _, conn = await loop.create_connection(Connection, key[0], key[1])
        except TimeoutError:
            self._give_back_slot()
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            self._give_back_slot()
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from None
        except BaseException:
            self._give_back_slot()
            raise
        conn.key = key
        return conn

    def _take_idle(self, key: tuple[str, int]) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
            self._discard(conn)  # the server closed it while idle
        return None

    def _drop_idle(self, key: tuple[str, int]) -> None:
        """Close every idle connection to `key` (found one dead: the others are suspect)."""
        for conn in self._idle.pop(key, []):
            self._discard(conn)

    def _evict_idle(self) -> bool:
        """Close one idle connection (to any origin) to free its slot; False if none."""
        for idle in self._idle.values():
            if idle:
                self._discard(idle.pop(0))  # the longest idle
                return True
        return False

    def _give_back_slot(self) -> None:
        self._free += 1
        self._wake()

    def _wake(self) -> None:
        """Let every call waiting for room look again (a slot or an idle connection)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def release(self, conn: Connection) -> None:
        """Back to the idle list when the response was read to its end, else closed."""
        if self._closed or not conn.reusable():
            self._discard(conn)
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_keepalive:
            self._discard(conn)
            return
        conn._reset()
        idle.append(conn)
        self._wake()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        if not conn.slot_released:
            conn.slot_released = True
            self._give_back_slot()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                self._discard(conn)
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()
