"""A small raw HTTP/1.1 client on uvloop: time to first token of SSE streams, and bursts.

wrk cannot see inside a response, so streams are timed here: the clock starts before the
request is written and stops when the first chunk with non-empty `content` arrives. The rest
of the stream is drained without parsing (only the chunked terminator is looked for), so the
client stays cheap next to the servers it measures.
"""

from __future__ import annotations

import asyncio
import re
import resource
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

from bench.wrk import LoadResult

FIRST_TOKEN = re.compile(rb'"content":\s*"[^"]')
CHUNKED_END = b"\r\n0\r\n\r\n"


@dataclass
class Timing:
    status: int
    first_token: float | None  # seconds after the request was written
    total: float
    size: int


@dataclass
class Connection:
    host: str
    port: int
    path: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    spare: bytes = field(default=b"")

    async def request(self, body: bytes) -> Timing:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=2**22
            )
        assert self.reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        self.writer.write(head + body)
        raw_head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw_head.split(b" ", 2)[1])
        headers = raw_head.lower()
        first: float | None = None
        size = 0
        if b"transfer-encoding: chunked" in headers:
            seen = b""
            tail = b""
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    raise ConnectionError("stream closed before its end")
                size += len(data)
                if first is None:
                    seen += data
                    if FIRST_TOKEN.search(seen):
                        first = time.perf_counter() - started
                        seen = b""
                tail = (tail + data)[-len(CHUNKED_END) :]
                if tail == CHUNKED_END:
                    break
        else:
            match = re.search(rb"content-length:\s*(\d+)", headers)
            size = int(match.group(1)) if match else 0
            await self.reader.readexactly(size)
            if b"connection: close" in headers:
                self.writer.close()
        return Timing(status, first, time.perf_counter() - started, size)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    return parts.hostname, parts.port or 80, parts.path


async def _closed_loop(
    url: str, body: bytes, concurrency: int, seconds: float
) -> tuple[list[Timing], float]:
    host, port, path = _split(url)
    timings: list[Timing] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Connection(host, port, path)
        try:
            while time.perf_counter() < deadline:
                timings.append(await conn.request(body))
        finally:
            conn.close()

    started = time.perf_counter()
    # Streams started before the deadline are let finish; the whole phase is still bounded.
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(concurrency))), timeout=seconds + 120
    )
    return timings, time.perf_counter() - started


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1000


def run_streams(url: str, body: bytes, concurrency: int, seconds: float) -> LoadResult:
    """Closed loop of streaming requests; latency is time to first token, totals in `extra`."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    timings, elapsed = uvloop.run(_closed_loop(url, body, concurrency, seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    good = [t for t in timings if t.status == 200 and t.first_token is not None]
    ttft = sorted(t.first_token for t in good if t.first_token is not None)
    totals = sorted(t.total for t in good)
    return LoadResult(
        requests=len(good),
        errors=len(timings) - len(good),
        seconds=elapsed,
        p50_ms=_ms(ttft, 0.50),
        p99_ms=_ms(ttft, 0.99),
        mean_ms=statistics.fmean(ttft) * 1000 if ttft else float("nan"),
        client_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        extra={
            "stream_total_p50_ms": _ms(totals, 0.50),
            "stream_total_p99_ms": _ms(totals, 0.99),
            "stream_bytes_mean": statistics.fmean(t.size for t in good) if good else 0,
        },
    )


async def _burst(url: str, body: bytes, count: int) -> list[Timing]:
    host, port, path = _split(url)
    conns = [Connection(host, port, path) for _ in range(count)]
    try:
        return list(await asyncio.gather(*(c.request(body) for c in conns)))
    finally:
        for conn in conns:
            conn.close()


def burst(url: str, body: bytes, count: int) -> list[Timing]:
    """`count` requests at once, each on its own connection; all in flight together."""
    return uvloop.run(asyncio.wait_for(_burst(url, body, count), timeout=300))
