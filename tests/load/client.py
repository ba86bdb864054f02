"""A small closed-loop HTTP/1.1 load client on asyncio streams (loopback only, bounded).

Each worker keeps one keep-alive connection and sends its next request when the previous
answer is read. Every answer is recorded: status, latency, Retry-After, and whether the
connection failed. A 429 or 503 with Retry-After makes the worker wait (capped), as a
well-behaved client would.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int  # 0: the connection failed (refused, reset, timed out)
    seconds: float
    started: float  # monotonic
    retry_after: str | None = None
    error: str = ""


@dataclass
class Results:
    answers: list[Answer] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(a.status == status for a in self.answers)

    def statuses(self) -> dict[int, int]:
        found: dict[int, int] = {}
        for answer in self.answers:
            found[answer.status] = found.get(answer.status, 0) + 1
        return found

    def latency_ms(self, q: float, status: int = 200) -> float:
        values = sorted(a.seconds for a in self.answers if a.status == status)
        if not values:
            return float("nan")
        if len(values) == 1:
            return values[0] * 1000
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1000


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, limit: float) -> Answer:
        """One request and its answer, given up after `limit` seconds."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                return await self._request(method, path, body, started)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            self.close()
            return Answer(0, time.monotonic() - started, started, error=type(exc).__name__)

    async def _request(self, method: str, path: str, body: bytes, started: float) -> Answer:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            self.close()
        return Answer(status, time.monotonic() - started, started, headers.get("retry-after"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(
    url: str,
    body: bytes | Callable[[int], bytes],
    clients: int,
    seconds: float,
    *,
    limit: float = 60.0,
    max_retry_wait: float = 1.0,
) -> Results:
    """`clients` workers POSTing to `url` for `seconds` (each finishes its last request;
    one request may take `limit` seconds)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", "loopback only"
    results = Results()
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        sent = 0
        try:
            while time.monotonic() < deadline:
                payload = body(n * 1_000_000 + sent) if callable(body) else body
                answer = await conn.request("POST", parts.path, payload, limit)
                sent += 1
                results.answers.append(answer)
                if answer.status == 0:
                    await asyncio.sleep(0.05)  # do not spin on a refused connection
                elif answer.retry_after is not None and answer.status in (429, 503):
                    await asyncio.sleep(min(float(answer.retry_after), max_retry_wait))
        finally:
            conn.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(n) for n in range(clients))), timeout=seconds + limit + 10
    )
    return results
