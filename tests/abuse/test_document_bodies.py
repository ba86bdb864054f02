"""Large document bodies while a separate process pings /health (issue 18, items 5 and 6).

Big inline documents must not hold the event loop (their JSON parsed, split and decoded off
it), and bodies that stall half-way must not pile up in memory: uploads go to disk as they
arrive, and bodies held in memory share MAX_BODY_MEMORY_BYTES. Each case records the worst
/health latency; the stalled-upload case also the gateway's resident memory.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from tests.abuse.conftest import RESULTS
from tests.abuse.test_loop_stalls import attack, watching_health
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

pytestmark = pytest.mark.abuse

MB = 1 << 20
# Issue 18: 16 uploads stalled after 60 MB each held 1,037 MB; the target is under 300 MB.
RSS_LIMIT_MB = 300


@pytest.fixture(scope="module")
def documents_gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    env = gateway_env(fake_server.port, prompt_mode="ocrflux", request_body_timeout=30)
    gateway = start_gateway(env)
    yield gateway
    gateway.stop()


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stall_upload(port: int, data: bytes) -> socket.socket:
    """A multipart /v1/ocr upload that sends `data` of its file, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    start = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
    )
    sock.sendall(
        b"POST /v1/ocr HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=B\r\n"
        b"content-length: %d\r\n\r\n" % (len(start) + len(data) + MB) + start
    )
    sock.sendall(data)
    return sock


def test_stalled_uploads_are_on_disk_not_in_memory(documents_gateway: Process) -> None:
    data = os.urandom(60 * MB)
    pid = documents_gateway.proc.pid
    before = resident_mb(pid)
    case = "16 uploads stalled after 60 MB each"
    with watching_health(documents_gateway, case):
        sockets = attack([lambda: stall_upload(documents_gateway.port, data)] * 16)
        try:
            time.sleep(1.0)  # what has arrived is written (or held) by now
            held = resident_mb(pid)
        finally:
            for sock in sockets:
                sock.close()
    case_, worst, pings = RESULTS[-1]
    RESULTS[-1] = (f"{case_} (RSS {before:.0f} -> {held:.0f} MB)", worst, pings)
    assert held < RSS_LIMIT_MB, f"{held:.0f} MB resident while the uploads stall"


# Issue 18 item 5: one 45 MB base64 document cost ~0.7 s on the event loop; 6 at once held
# /health for 2,368 ms.
INLINE_BASE64_MB = 45
INLINE_AT_ONCE = 6


def padded_pdf(size: int) -> bytes:
    """A one-page PDF of about `size` bytes: the page is blank, an unused stream is not."""
    from tests.documents.pdfs import _serialize

    filler = os.urandom(size)
    return _serialize(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            b"<< /Length 0 >>\nstream\n\nendstream",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(filler) + filler + b"\nendstream",
        ]
    )


@pytest.fixture(scope="module")
def big_pdf() -> bytes:
    return padded_pdf(INLINE_BASE64_MB * MB * 3 // 4)


@pytest.fixture(scope="module")
def inline_url(big_pdf: bytes) -> str:
    return "data:application/pdf;base64," + base64.b64encode(big_pdf).decode()


@pytest.fixture(scope="module")
def inline_gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    # Room for all six bodies at once (the attack as measured, not the budget's 503s).
    env = gateway_env(
        fake_server.port,
        prompt_mode="ocrflux",
        max_body_memory_bytes=512 * MB,
        request_body_timeout=30,
    )
    gateway = start_gateway(env)
    yield gateway
    gateway.stop()


def inline_case(
    gateway: Process,
    case: str,
    path: str,
    body: bytes,
    content_type: str = "application/json",
) -> None:
    """Send the body INLINE_AT_ONCE times at once while /health is pinged; resident memory
    before, at its peak, and 2 s after the answers (the bodies must be let go of by then)."""
    pid = gateway.proc.pid
    before = peak = after = resident_mb(pid)

    def send() -> httpx.Response:
        return httpx.post(
            f"{gateway.url}{path}",
            content=body,
            headers={"content-type": content_type},
            timeout=60,
        )

    try:
        with watching_health(gateway, case), ThreadPoolExecutor(INLINE_AT_ONCE) as pool:
            sent = [pool.submit(send) for _ in range(INLINE_AT_ONCE)]
            while not all(f.done() for f in sent):
                peak = max(peak, resident_mb(pid))
                time.sleep(0.05)
            answers = [f.result() for f in sent]
    finally:
        time.sleep(2.0)
        after = resident_mb(pid)
        case_, worst, pings = RESULTS[-1]
        RESULTS[-1] = (f"{case_} (RSS {before:.0f}/{peak:.0f}/{after:.0f} MB)", worst, pings)
    assert [a.status_code for a in answers] == [200] * INLINE_AT_ONCE, answers[0].text[:300]
    assert after - before < 150, f"{after - before:.0f} MB still held 2 s after the answers"


def test_big_inline_documents_in_ocr_json(
    inline_gateway: Process, inline_url: str, fake: FakeVLLMProcess
) -> None:
    body = orjson.dumps(
        {
            "model": "mistral-ocr-latest",
            "document": {"type": "document_url", "document_url": inline_url},
        }
    )
    case = f"{INLINE_AT_ONCE} x {INLINE_BASE64_MB} MB base64 in /v1/ocr JSON"
    inline_case(inline_gateway, case, "/v1/ocr", body)


def test_big_inline_documents_in_chat_file_parts(
    inline_gateway: Process, inline_url: str, fake: FakeVLLMProcess
) -> None:
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": inline_url}}
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    case = f"{INLINE_AT_ONCE} x {INLINE_BASE64_MB} MB base64 in a chat file part"
    inline_case(inline_gateway, case, "/v1/chat/completions", body)


def test_big_documents_uploaded_as_multipart(
    inline_gateway: Process, big_pdf: bytes, fake: FakeVLLMProcess
) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n" + big_pdf + b"\r\n--B--\r\n"
    )
    case = f"{INLINE_AT_ONCE} x {len(big_pdf) // MB} MB PDF uploads (multipart)"
    inline_case(inline_gateway, case, "/v1/ocr", body, "multipart/form-data; boundary=B")
