"""Replays of the loop-stall attacks while a separate process pings /health (issue 15).

Each case builds its payloads first, then attacks the real gateway on loopback (bounded in
count and time) while tests/abuse/probe.py pings GET /health every 20 ms. /health must answer
within 500 ms at worst during every case; the worst figure of each is printed at the end of
the run. Before the fixes these cases held the event loop for seconds to minutes.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from tests.abuse.conftest import RESULTS
from tests.support import ROOT, FakeVLLMProcess, Process

pytestmark = pytest.mark.abuse

HEALTH_LIMIT_MS = 500.0
PING_EVERY = 0.02
ATTACK_TIMEOUT = 30.0


@contextmanager
def watching_health(gateway: Process, case: str) -> Iterator[None]:
    """Ping /health from another process during the block; record and check the worst."""
    probe = subprocess.Popen(
        [sys.executable, "-m", "tests.abuse.probe", f"{gateway.url}/health", str(PING_EVERY), "90"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert probe.stdout is not None
    assert probe.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # a few pings before the attack starts
    attacked = False
    try:
        yield
        time.sleep(0.2)  # and a few after it
        attacked = True
    finally:
        probe.send_signal(signal.SIGTERM)
        out, _ = probe.communicate(timeout=30)
        latencies: list[float] = json.loads(out.strip().splitlines()[-1])
        worst = max(latencies)
        RESULTS.append((case if attacked else f"{case} [attack failed]", worst, len(latencies)))
    assert -1.0 not in latencies, "a /health ping failed"
    assert worst < HEALTH_LIMIT_MS, f"{case}: /health took {worst:.0f} ms"


def attack(requests: list[Callable[[], Any]]) -> list[Any]:
    """Run the requests all at once; their results in order."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda send: send(), requests))


def poster(gateway: Process, body: bytes) -> Callable[[], httpx.Response]:
    def send() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=ATTACK_TIMEOUT,
        )

    return send


def chat_body(parts: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": parts}], **extra})


def image_part(data: bytes, mime: str) -> dict[str, Any]:
    url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return {"type": "image_url", "image_url": {"url": url}}


def encoded(fmt: str, size: tuple[int, int] = (800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body))
    return struct.pack(">I", len(body)) + kind + body + crc


# --- the cases ---------------------------------------------------------------------------------


def test_png_text_chunks(passthrough: Process, fake: FakeVLLMProcess) -> None:
    plain = encoded("PNG")
    inflates = zlib.compress(b"\x00" * (1 << 20), 9)  # ~1 KB that Pillow inflates to 1 MB
    texts = b"".join(png_chunk(b"zTXt", b"k%d\x00\x00" % i + inflates) for i in range(64))
    bomb = plain[:33] + texts + plain[33:]  # 69 KB; 64 MB of text once inflated
    body = chat_body([image_part(bomb, "image/png")] * 32)
    with watching_health(passthrough, "PNG text chunks (4 x 32 images)"):
        responses = attack([poster(passthrough, body)] * 4)
    assert [r.status_code for r in responses] == [200] * 4


def test_jpeg_and_png_structure_bombs(passthrough: Process, fake: FakeVLLMProcess) -> None:
    jpeg = encoded("JPEG")
    comments = jpeg[:2] + b"\xff\xfe\x00\x02" * 1_000_000 + jpeg[2:]  # 4 MB of empty comments
    plain = encoded("PNG")
    chunks = plain[:33] + png_chunk(b"tiNy", b"") * 150_000 + plain[33:]  # 1.8 MB of chunks
    bodies = [
        chat_body([image_part(comments, "image/jpeg")] * 2),
        chat_body([image_part(chunks, "image/png")] * 4),
    ]
    with watching_health(passthrough, "JPEG segments, PNG chunk lists (4 requests)"):
        responses = attack([poster(passthrough, b) for b in bodies * 2])
    assert [r.status_code for r in responses] == [400] * 4


def test_many_tiny_content_parts(passthrough: Process, fake: FakeVLLMProcess) -> None:
    parts = b",".join([b'{"type":"text","text":""}'] * 2_000_000)  # 52 MB, under the byte limit
    body = b'{"model":"m","messages":[{"role":"user","content":[' + parts + b"]}]}"
    with watching_health(passthrough, "2,000,000 empty parts (2 requests)"):
        responses = attack([poster(passthrough, body)] * 2)
    assert [r.status_code for r in responses] == [400] * 2
    assert fake.requests() == []


def test_huge_nesting(passthrough: Process, fake: FakeVLLMProcess) -> None:
    deep = b"[" * 1000 + b"1" + b"]" * 1000
    body = b'{"model":"m","top_k":' + deep + b',"messages":[{"role":"user","content":"x"}]}'
    wide = b'{"model":"m","x":[' + b",".join([b"[[[[[[[[1]]]]]]]]"] * 12_000) + b"]}"
    with watching_health(passthrough, "JSON nested 1,000 deep (8 requests)"):
        responses = attack([poster(passthrough, body)] * 6 + [poster(passthrough, wide)] * 2)
    assert [r.status_code for r in responses] == [400] * 8
    assert fake.requests() == []


REGEX_BOMBS = [
    "\\(" * 20_000,  # _PROTECTED: each \( scanned to the end
    "<table" * 5_000,  # _TABLE_TAG: each <table scanned to the end
    "# a" + " " * 20_000 + "b",  # _HEADING and the image placeholder pattern
    "<table><tr><td>" + "<a" * 10_000,  # HTMLParser: each unclosed tag scanned to the end
    "<table><tr><td>" + "<" * 20_000 + "</td></tr></table>",  # cell text: <[^>]+>
]


@pytest.mark.parametrize("fmt", ["markdown", "list"])
def test_regex_bombs_in_model_output(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, fmt: str
) -> None:
    page = {
        "primary_language": "en",
        "is_rotation_valid": True,
        "rotation_correction": 0,
        "is_table": False,
        "is_diagram": False,
        "natural_text": "\n\n".join(REGEX_BOMBS),
    }
    fake.control(answer=json.dumps(page))
    body = chat_body([image_part(encoded("PNG"), "image/png")], output_format=fmt)
    with watching_health(ocrflux_gateway, f"regex bombs in model output ({fmt}, 4 requests)"):
        responses = attack([poster(ocrflux_gateway, body)] * 4)
    assert [r.status_code for r in responses] == [200] * 4


def flood_head(port: int) -> bytes:
    """Send up to 8 MB of request head as fast as the server takes it; what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        line = b"x-flood: " + b"a" * 65_000 + b"\r\n"
        try:
            for _ in range(128):
                sock.sendall(line)
        except OSError:
            pass  # closed by the server
        try:
            return sock.recv(200)
        except OSError:
            return b""


def trickle(port: int, head: bytes, body: bytes, seconds: float) -> bytes:
    """Send head then body a byte every 0.1 s for up to `seconds`; what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        deadline = time.monotonic() + seconds
        try:
            for byte in head + body:
                if time.monotonic() > deadline:
                    break
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass  # closed by the server: read what it said
        try:
            return sock.recv(200)
        except OSError:
            return b""


def test_header_floods_and_tricklers(passthrough: Process) -> None:
    port = passthrough.port
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 64\r\n"
    attacks: list[Callable[[], bytes]] = [lambda: flood_head(port)] * 8
    attacks += [lambda: trickle(port, head + b"\r\n", b"{" * 64, 6)] * 8  # body tricklers
    attacks += [lambda: trickle(port, head, b"", 6)] * 8  # head tricklers
    with watching_health(passthrough, "header floods, head/body tricklers (24 conns)"):
        answers = attack(attacks)
    assert all(a.startswith(b"HTTP/1.1 431") or a == b"" for a in answers[:8])
    # Cut by the deadlines (2 s for heads, 3 s for bodies here), well before the 6 s trickle.
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers[8:]), answers[8:]
