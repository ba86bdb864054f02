"""A client that leaves before its answer takes its queued work with it (ocrflux.http.disconnect).

The app runs in-process and is driven over raw ASGI, so the test decides exactly when the
client goes away; image work is slowed down and counted to see what still runs after that.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from ocrflux.app import create_app
from ocrflux.http.disconnect import CLIENT_CLOSED, unless_disconnected
from ocrflux.settings import Settings
from tests.asgi_support import bmp_url, call
from tests.support import FakeVLLMProcess


async def test_queued_image_work_is_dropped_when_the_client_leaves(
    fake: FakeVLLMProcess, slow_image_work: list[str]
) -> None:
    settings = Settings(
        vllm_url="http://127.0.0.1",
        vllm_port=fake.port,
        prompt_mode="passthrough",
        image_workers=1,
        health_check_interval=0,
    )
    app = create_app(settings)
    images = [{"type": "image_url", "image_url": {"url": bmp_url((64, 48))}}] * 8
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": images}]})
    async with app.router.lifespan_context(app):
        sent = await call(app, body, leave_after=0.1)
        await asyncio.sleep(0.8)  # what was queued would have started by now
    assert sent[0]["status"] == CLIENT_CLOSED
    assert len(slow_image_work) <= 2  # the job running when the client left (and no more)
    assert fake.requests() == []


async def test_a_client_that_stays_gets_its_answer(
    fake: FakeVLLMProcess, slow_image_work: list[str]
) -> None:
    settings = Settings(vllm_url="http://127.0.0.1", vllm_port=fake.port, prompt_mode="passthrough")
    app = create_app(settings)
    image = {"type": "image_url", "image_url": {"url": bmp_url((64, 48))}}
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [image]}]})
    async with app.router.lifespan_context(app):
        sent = await asyncio.wait_for(call(app, body, leave_after=None), timeout=20)
    assert sent[0]["status"] == 200
    assert len(slow_image_work) == 1 and len(fake.requests()) == 1


async def test_work_that_fails_fails_as_usual_and_the_watcher_stops() -> None:
    from starlette.requests import Request

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def work() -> Any:
        raise ValueError("boom")

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(ValueError, match="boom"):
        await unless_disconnected(request, work())
