"""Bodies held in memory share one budget, MAX_BODY_MEMORY_BYTES (ocrflux.http.budget).

A raw socket declares a large body and stalls half-way; the gateway runs on loopback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import orjson

from tests.support import FakeVLLMProcess, Process

MB = 1 << 20


def stalled_body(port: int, declared: int, sent: int) -> socket.socket:
    """A chat request whose head declares `declared` bytes, of which `sent` arrive."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    sock.sendall(head + b"content-length: %d\r\n\r\n" % declared + b'{"model": "' + b"m" * sent)
    return sock


def test_a_body_past_the_budget_waits_then_is_a_503_and_small_ones_pass(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", max_body_memory_bytes=2 * MB)
    holder = stalled_body(gateway.port, declared=int(1.5 * MB), sent=MB)
    try:
        time.sleep(0.3)
        large = b'{"model": "m", "messages": [{"role": "user", "content": "%s"}]}' % (
            b"x" * int(1.2 * MB)
        )
        started = time.monotonic()
        refused = httpx.post(f"{gateway.url}/v1/chat/completions", content=large, timeout=10)
        waited = time.monotonic() - started
        small = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        served = httpx.post(f"{gateway.url}/v1/chat/completions", json=small, timeout=10)
    finally:
        holder.close()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    error = orjson.loads(refused.content)["error"]
    assert error["code"] == "server_busy"
    assert "MAX_BODY_MEMORY_BYTES=2,097,152" in error["message"]
    assert 1.5 < waited < 6  # it waited its 2 s for room first
    assert served.status_code == 200
    # Once the stalled body is gone, the large one fits.
    time.sleep(0.3)
    again = httpx.post(f"{gateway.url}/v1/chat/completions", content=large, timeout=10)
    assert again.status_code == 200
