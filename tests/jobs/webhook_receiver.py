"""A webhook receiver on loopback for the tests: records each POST, answers as it is told."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai

from tests.support import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """`answers`: what the next POSTs get, in order (a status code, or "hang" to answer 200
    only after `hang_seconds`); then 200. `received`: every POST, in arrival order."""

    def __init__(self, port: int = 0, hang_seconds: float = 2.0) -> None:
        self.port = port or free_port()
        self.answers: list[int | str] = []
        self.received: list[Received] = []
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(self.path, headers, body, time.time()))
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    time.sleep(receiver.hang_seconds)
                    answer = 200
                self.send_response(int(answer))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ocr"

    def events(self, secret: str) -> list[Any]:
        """The received events, each verified and parsed by the openai SDK."""
        sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
        with self._lock:
            received = list(self.received)
        return [sdk.webhooks.unwrap(r.body, r.headers, secret=secret) for r in received]

    def wait(self, count: int, seconds: float = 20) -> list[Received]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            if time.monotonic() > deadline:
                got = len(self.received)
                raise AssertionError(f"{got} webhooks within {seconds} s, not {count}")
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
