"""A chat request's images (ocrflux.chat): budget decided from headers, failures end the work.

In-process over raw ASGI, with image work slowed down and counted (tests/asgi_support.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ocrflux.app import create_app
from ocrflux.intake import preparation
from ocrflux.settings import Settings
from tests.asgi_support import bmp_url, call
from tests.support import FakeVLLMProcess


def settings(fake: FakeVLLMProcess, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "vllm_url": "http://127.0.0.1",
        "vllm_port": fake.port,
        "prompt_mode": "passthrough",
        "health_check_interval": 0,
    }
    return Settings(**{**values, **overrides})


def body(*urls: str, **extra: Any) -> bytes:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": parts}], **extra})


def error(sent: list[dict[str, Any]]) -> dict[str, Any]:
    return orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]


async def test_images_that_cannot_fit_are_refused_before_any_pixel_is_decoded(
    fake: FakeVLLMProcess, slow_image_work: list[str]
) -> None:
    app = create_app(settings(fake, max_model_len=2048))
    photo = bmp_url((2000, 1500))  # would be decoded and scaled to 1024x768 (999 tokens)
    async with app.router.lifespan_context(app):
        sent = await call(app, body(*[photo] * 3, max_tokens=1900), leave_after=None)
    assert sent[0]["status"] == 400
    refusal = error(sent)
    assert (refusal["code"], refusal["param"]) == ("context_length_exceeded", "messages")
    assert "the model's context is 2,048" in refusal["message"]
    assert slow_image_work == []  # the headers told: nothing was decoded
    assert fake.requests() == []


async def test_images_that_must_shrink_are_decoded_once_straight_to_the_size_that_fits(
    fake: FakeVLLMProcess, slow_image_work: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shrunk: list[object] = []
    monkeypatch.setattr(preparation, "shrink", lambda *args: shrunk.append(args) or args[0])
    app = create_app(settings(fake, max_model_len=2048))
    async with app.router.lifespan_context(app):
        sent = await call(app, body(bmp_url((2000, 1500)), max_tokens=1500), leave_after=None)
    assert sent[0]["status"] == 200
    assert len(slow_image_work) == 1 and shrunk == []  # not decoded again to shrink it
    ((width, height),) = [(i["width"], i["height"]) for i in fake.requests()[0]["images"]]
    assert width < 1024 and (width, height) != (1024, 768)


async def test_one_refused_image_cancels_the_work_queued_for_the_others(
    fake: FakeVLLMProcess, slow_image_work: list[str]
) -> None:
    app = create_app(settings(fake, image_workers=1))
    urls = [bmp_url((64, 48))] * 6 + ["data:image/png;base64,@@@"]
    async with app.router.lifespan_context(app):
        sent = await call(app, body(*urls), leave_after=None)
        assert sent[0]["status"] == 400
        assert error(sent)["param"] == "messages[0].content[6].image_url.url"
    assert slow_image_work == []  # the header check refused it before any pixel job ran


async def test_pages_whose_budget_cannot_work_are_refused_before_any_pixel_is_decoded(
    fake: FakeVLLMProcess, slow_image_work: list[str]
) -> None:
    app = create_app(settings(fake, prompt_mode="ocrflux"))
    pages = [bmp_url((600, 800))] * 4  # each would be decoded and scaled to 768x1024
    async with app.router.lifespan_context(app):
        sent = await call(app, body(*pages, max_tokens=8000), leave_after=None)
    assert sent[0]["status"] == 400
    refusal = error(sent)
    assert (refusal["code"], refusal["param"]) == ("context_length_exceeded", "max_tokens")
    assert "a 768x1024 page" in refusal["message"]
    assert slow_image_work == []
    assert fake.requests() == []
