"""`document_url` over http(s) goes through the guarded fetch, on the document path itself:
a refused address is never connected to, each redirect hop is checked (address and scheme),
and the body is capped at MAX_DOCUMENT_BYTES while it arrives.

The test server listens on 127.0.0.1, which the SSRF guard refuses by default; the gateways
that download from it allow exactly that address (REMOTE_IMAGE_ALLOWLIST=127.0.0.1/32).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.documents.pdfs import Page, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

PAGE = Page(612, 792, ("Fetched from afar.",))
PDF = make_pdf([PAGE])
LIMIT = 64 * 1024  # MAX_DOCUMENT_BYTES of the allow-listing gateway
REDIRECTS = {
    "/to-private": "http://127.0.0.2:9/doc.pdf",
    "/to-file": "file:///etc/passwd",
    "/to-doc": "/doc.pdf",
}


@dataclass
class DocumentServer:
    url: str
    hits: Counter[str] = field(default_factory=Counter)
    streamed: int = 0  # bytes of /endless written before the reader hung up


@pytest.fixture(scope="module")
def server() -> Iterator[DocumentServer]:
    stop = threading.Event()
    state = DocumentServer("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] += 1
            if self.path == "/doc.pdf":
                self.send_response(200)
                self.send_header("content-type", "application/pdf")
                self.send_header("content-length", str(len(PDF)))
                self.end_headers()
                self.wfile.write(PDF)
            elif self.path in REDIRECTS:
                self.send_response(302)
                self.send_header("location", REDIRECTS[self.path])
                self.end_headers()
            elif self.path == "/declared-too-large":
                # Says it is one byte over the limit, sends a little, then stalls: only a
                # reader that trusts nothing past the declared size answers at once.
                self.send_response(200)
                self.send_header("content-length", str(LIMIT + 1))
                self.end_headers()
                self.wfile.write(PDF[:100])
                self.wfile.flush()
                stop.wait(8)
            elif self.path == "/endless":
                self.send_response(200)  # no length: the body ends when the server closes
                self.end_headers()
                chunk = b"%PDF-1.7\n" + b"0" * 65527
                try:
                    while not stop.is_set() and state.streamed < 64 * 1024 * 1024:
                        self.wfile.write(chunk)
                        state.streamed += len(chunk)
                except OSError:
                    pass
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    stop.set()
    httpd.shutdown()


@pytest.fixture(scope="module")
def allowing(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    """A gateway allowed to reach 127.0.0.1 (only), documents capped at 64 KB."""
    env = gateway_env(
        fake_server.port,
        prompt_mode="ocrflux",
        remote_image_allowlist="127.0.0.1/32",
        max_document_bytes=LIMIT,
        remote_image_timeout=5,
    )
    started = start_gateway(env)
    yield started
    started.stop()


def ocr(gateway: Process, url: str) -> httpx.Response:
    body = {"document": {"type": "document_url", "document_url": url}}
    return httpx.post(f"{gateway.url}/v1/ocr", json=body, timeout=30)


def refusal(response: httpx.Response) -> tuple[int, str, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["param"], error["message"]


def test_an_allowed_document_url_is_downloaded_and_read(
    allowing: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    fake.control(page_answers={PAGE.key(): [page_json("Fetched from afar.")]})
    response = ocr(allowing, f"{server.url}/doc.pdf")
    assert response.status_code == 200, response.text
    assert response.json()["document_text"] == "Fetched from afar."
    assert response.json()["usage_info"]["doc_size_bytes"] == len(PDF)
    # A relative redirect to the same allowed server is followed.
    assert ocr(allowing, f"{server.url}/to-doc").json()["document_text"] == "Fetched from afar."


def test_loopback_is_refused_by_default_without_connecting(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    before = server.hits["/doc.pdf"]
    for host in ("127.0.0.1", "localhost"):
        port = server.url.rsplit(":", 1)[1]
        response = ocr(ocrflux_gateway, f"http://{host}:{port}/doc.pdf")
        assert refusal(response) == (
            400,
            "invalid_document",
            "document",
            "address 127.0.0.1 is not allowed",
        ), host
    assert server.hits["/doc.pdf"] == before  # the guard refused before any connection
    assert fake.requests() == []


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://10.0.0.1/doc.pdf", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]:9/doc.pdf", "::1"),
        ("http://[::ffff:192.168.1.1]/doc.pdf", "::ffff:c0a8:101"),
    ],
)
def test_private_addresses_are_refused_at_once(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, url: str, address: str
) -> None:
    started = time.monotonic()
    response = ocr(ocrflux_gateway, url)
    assert refusal(response) == (
        400,
        "invalid_document",
        "document",
        f"address {address} is not allowed",
    )
    assert time.monotonic() - started < 2  # refused, not a connection attempt timing out
    assert fake.requests() == []


def test_a_redirect_to_a_refused_address_is_refused(
    allowing: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    response = ocr(allowing, f"{server.url}/to-private")
    assert refusal(response) == (
        400,
        "invalid_document",
        "document",
        "address 127.0.0.2 is not allowed",
    )
    assert server.hits["/to-private"] >= 1  # the first hop was allowed, the second refused
    assert fake.requests() == []


@pytest.mark.parametrize(
    ("path_or_url", "message"),
    [
        ("/to-file", "unsupported URL scheme 'file' (only http and https)"),
        (
            "ftp://127.0.0.1/doc.pdf",
            "unsupported URL scheme 'ftp': send a data: URL, bare base64 or an http(s) URL",
        ),
        (
            "file:///etc/passwd",
            "unsupported URL scheme 'file': send a data: URL, bare base64 or an http(s) URL",
        ),
    ],
)
def test_schemes_other_than_http_are_refused_directly_and_after_a_redirect(
    allowing: Process,
    fake: FakeVLLMProcess,
    server: DocumentServer,
    path_or_url: str,
    message: str,
) -> None:
    url = server.url + path_or_url if path_or_url.startswith("/") else path_or_url
    assert refusal(ocr(allowing, url)) == (400, "invalid_document", "document", message)
    assert fake.requests() == []


def test_a_body_declared_over_the_limit_is_refused_at_once(
    allowing: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    started = time.monotonic()
    response = ocr(allowing, f"{server.url}/declared-too-large")
    assert refusal(response) == (
        413,
        "invalid_document",
        "document",
        "document is 65,537 bytes, the limit is 65,536 bytes",
    )
    assert time.monotonic() - started < 3  # the server stalls 8 s after its first bytes
    assert fake.requests() == []


def test_an_endless_body_is_cut_at_the_limit(
    allowing: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    response = ocr(allowing, f"{server.url}/endless")
    assert refusal(response) == (
        413,
        "invalid_document",
        "document",
        "document is larger than the limit of 64 KB",
    )
    time.sleep(0.2)  # the server notices the closed connection
    # What left the server: the cap plus what the sockets' buffers held, never the 64 MB.
    assert server.streamed < 16 * 1024 * 1024, server.streamed
    assert fake.requests() == []


def test_chat_file_parts_and_image_urls_with_http_documents_are_guarded_too(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, server: DocumentServer
) -> None:
    before = server.hits["/doc.pdf"]
    parts: list[Callable[[str], dict[str, Any]]] = [
        lambda url: {"type": "file", "file": {"file_data": url}},
        lambda url: {"type": "image_url", "image_url": {"url": url}},
    ]
    params = ["messages[0].content[0].file.file_data", "messages[0].content[0].image_url.url"]
    for make, param in zip(parts, params, strict=True):
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": [make(f"{server.url}/doc.pdf")]}],
        }
        response = httpx.post(f"{ocrflux_gateway.url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["message"]) == (param, "address 127.0.0.1 is not allowed")
    assert server.hits["/doc.pdf"] == before
    assert fake.requests() == []
