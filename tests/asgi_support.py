"""Driving the app in-process over raw ASGI, and slowing down image work to watch it."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from typing import Any

import pytest
from PIL import Image

from ocrflux.intake import preparation


def bmp_url(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "BMP")  # BMP always needs pixel work
    return "data:image/bmp;base64," + base64.b64encode(buffer.getvalue()).decode()


async def call(app: Any, body: bytes, leave_after: float | None) -> list[dict[str, Any]]:
    """POST /v1/chat/completions; the client disconnects `leave_after` s after sending."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if leave_after is None:
            await asyncio.Event().wait()  # a client that stays (until cancelled)
        await asyncio.sleep(leave_after or 0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def slow_down_image_work(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.3) -> list[str]:
    """Make every pixel job take `seconds`; the list records each one that starts."""
    started: list[str] = []
    original = preparation.finish

    def slow(*args: Any) -> Any:
        started.append(threading.current_thread().name)
        time.sleep(seconds)
        return original(*args)

    monkeypatch.setattr(preparation, "finish", slow)
    return started
