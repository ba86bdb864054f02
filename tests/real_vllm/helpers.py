"""Small helpers for the real-vLLM suites: test images and a recording loopback proxy."""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from PIL import Image

# Headers that describe one hop, not the message; the proxy sets its own.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def png_data_url(width: int, height: int, seed: int = 0) -> str:
    """A deterministic, non-uniform RGB PNG as a data URL (lossless, so pixels survive)."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    pixels = image.load()
    assert pixels is not None
    for x in range(0, width, 3):
        for y in range(0, height, 3):
            pixels[x, y] = ((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x + y) % 256)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(urls: list[str], text: str = "Describe the page.") -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


@dataclass
class Exchange:
    """One request the proxy forwarded, and what came back."""

    method: str
    path: str
    request: Any
    status: int
    response: Any


class RecordingProxy:
    """A loopback HTTP proxy in front of one server that records every exchange.

    It buffers whole responses, so it suits the gateway's non-streaming upstream calls
    (ocrflux page reads, health checks); it is not meant for relaying SSE streams.
    """

    def __init__(self, target: str, timeout: float = 300.0) -> None:
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=timeout)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def chat_calls(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                upstream = proxy._client.request(
                    self.command, proxy.target + self.path, content=body, headers=headers
                )
                with proxy._lock:
                    proxy.exchanges.append(
                        Exchange(
                            self.command,
                            self.path,
                            _json_or_bytes(body),
                            upstream.status_code,
                            _json_or_bytes(upstream.content),
                        )
                    )
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("content-length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

        return Handler


def _json_or_bytes(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data
