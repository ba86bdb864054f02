"""Request heads are size-limited, and heads and bodies must arrive in time (ocrflux.http.limits).

Raw sockets against the real gateway on loopback: oversized heads, tricklers, idle sockets.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from tests.support import FakeVLLMProcess, Process

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
def gateway(make_gateway: Callable[..., Process]) -> Process:
    return make_gateway(prompt_mode="passthrough", request_header_timeout=1, request_body_timeout=2)


@pytest.fixture
def connect(gateway: Process) -> Iterator[Callable[[], socket.socket]]:
    opened: list[socket.socket] = []

    def open_one() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
        opened.append(sock)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds the wait)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_and_error(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)["error"]


def trickle(sock: socket.socket, data: bytes, every: float, until: float) -> bool:
    """Send `data` a byte at a time; False once the server has closed the connection."""
    deadline = time.monotonic() + until
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return False
        time.sleep(every)
    return True


def test_an_oversized_head_is_a_431_and_the_connection_closes(
    connect: Callable[[], socket.socket], gateway: Process
) -> None:
    sock = connect()
    sock.sendall(HEAD + b"x-padding: " + b"a" * 40_000 + b"\r\n")  # no end of head yet
    status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert error["message"] == "request head is over the limit of 16,384 bytes"
    assert httpx.get(f"{gateway.url}/health").status_code == 200


def test_a_head_trickled_a_byte_at_a_time_is_cut_with_a_408(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    started = time.monotonic()
    trickle(sock, HEAD, every=0.2, until=4)
    raw = read_until_closed(sock)
    assert time.monotonic() - started < 4  # REQUEST_HEADER_TIMEOUT is 1 s here
    status, error = status_and_error(raw)
    assert status == 408 and "request head not complete within 1 s" in str(error["message"])


def test_an_idle_connection_is_closed_after_the_head_timeout(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    started = time.monotonic()
    raw = read_until_closed(sock)
    assert 0.8 < time.monotonic() - started < 4
    assert status_and_error(raw)[0] == 408


def test_a_body_trickled_a_byte_at_a_time_is_cut_with_a_408(
    connect: Callable[[], socket.socket],
) -> None:
    sock = connect()
    sock.sendall(HEAD + b"content-length: %d\r\n\r\n" % len(BODY))
    started = time.monotonic()
    trickle(sock, BODY, every=0.2, until=5)
    raw = read_until_closed(sock)
    assert time.monotonic() - started < 5  # REQUEST_BODY_TIMEOUT is 2 s here
    status, error = status_and_error(raw)
    assert status == 408 and "request body not complete within 2 s" in str(error["message"])


def test_ordinary_clients_are_not_affected(
    connect: Callable[[], socket.socket], gateway: Process
) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:  # one kept-alive connection
        for _ in range(3):
            response = client.post("/v1/chat/completions", content=BODY)
            assert response.status_code == 200
            time.sleep(0.6)  # idle between requests, under uvicorn's keep-alive timeout
    sock = connect()  # a body sent in two parts, well within its deadline
    sock.sendall(HEAD + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BODY))
    sock.sendall(BODY[:10])
    time.sleep(0.5)
    sock.sendall(BODY[10:])
    assert read_until_closed(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/ocr"])
def test_a_short_body_is_a_408_even_when_total_timeout_is_shorter(
    make_gateway: Callable[..., Process], path: str
) -> None:
    # The body's deadline is REQUEST_BODY_TIMEOUT, whatever TOTAL_TIMEOUT says: a body shorter
    # than its Content-Length is the client's 408, not the gateway's 504.
    gateway = make_gateway(prompt_mode="passthrough", total_timeout=1, request_body_timeout=2)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        head = HEAD.replace(b"/v1/chat/completions", path.encode())
        sock.sendall(head + b"content-length: %d\r\n\r\n" % len(BODY) + BODY[:10])
        started = time.monotonic()
        raw = read_until_closed(sock)
    assert 1.8 < time.monotonic() - started < 5
    status, error = status_and_error(raw)
    assert status == 408 and "request body not complete within 2 s" in str(error["message"])


def test_a_body_slower_than_total_timeout_but_in_time_is_served(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", total_timeout=1, request_body_timeout=3)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(HEAD + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BODY))
        sock.sendall(BODY[:10])
        time.sleep(1.5)  # past TOTAL_TIMEOUT, within REQUEST_BODY_TIMEOUT
        sock.sendall(BODY[10:])
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
