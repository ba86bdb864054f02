"""OCRFlux mode's page reader (ocrflux.pages) with a scripted engine, in-process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from ocrflux import pages as pages_module
from ocrflux.documents.loading import SingleImage
from ocrflux.documents.pipeline import DocumentReader
from ocrflux.engines.base import MergeAnswer, PageJob, PageResult, TableMergeAnswer
from ocrflux.format.page import PageResponse
from ocrflux.intake.images import PreparedImage
from ocrflux.pages import SHAPE_ON_LOOP_LIMIT, PageReader
from ocrflux.protocol import ChatCompletionRequest
from ocrflux.settings import Settings


def page(text: str) -> PageResponse:
    return PageResponse("en", True, 0, False, False, text)


def image(width: int) -> PreparedImage:
    return PreparedImage("data:image/png;base64,AAAA", width, 100, "image/png", False)


class ScriptedEngine:
    """Reads page `width` after `delays[width]` seconds, answering `texts[width]`."""

    name = "scripted"

    def __init__(self, texts: dict[int, str], delays: dict[int, float] | None = None) -> None:
        self.texts = texts
        self.delays = delays or {}

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        await asyncio.sleep(self.delays.get(image.width, 0.0))
        answer = self.texts[image.width]
        if isinstance(answer, BaseException):
            raise answer
        return PageResult(page=page(answer))

    async def detect_merges(self, previous: list[str], following: list[str], job: PageJob) -> Any:
        return MergeAnswer([])

    async def merge_tables(self, first: str, second: str, job: PageJob) -> Any:
        return TableMergeAnswer(None)


class Loader:
    """Stands in for DocumentLoader: an image part's URL names the page width ("w:2")."""

    async def chat_image(self, url: str, param: str) -> SingleImage:
        return SingleImage(image(int(url.removeprefix("w:"))))


def page_reader(engine: ScriptedEngine) -> PageReader:
    reader = DocumentReader(engine, pages_in_flight=4)
    return PageReader(Settings(), Loader(), reader)  # type: ignore[arg-type]


def chat_request(*widths: int, stream: bool = False, **extra: Any) -> ChatCompletionRequest:
    parts = [{"type": "image_url", "image_url": {"url": f"w:{w}"}} for w in widths]
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": parts}], "stream": stream, **extra}
    )


async def body_of(response: Any) -> bytes:
    if hasattr(response, "body_iterator"):
        iterator: AsyncIterator[bytes | str] = response.body_iterator
        return b"".join([c if isinstance(c, bytes) else c.encode() async for c in iterator])
    return bytes(response.body)


def events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


async def test_long_page_text_is_shaped_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    original = pages_module.shape_document

    def recording(*args: Any, **kwargs: Any) -> str:
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(pages_module, "shape_document", recording)
    short, long = "a short page", "x" * (SHAPE_ON_LOOP_LIMIT + 1)
    reader = page_reader(ScriptedEngine({1: short, 2: long}))
    for width, text in [(1, short), (2, long)]:
        response = await reader.respond(chat_request(width), "rid")
        assert orjson.loads(await body_of(response))["choices"][0]["message"]["content"] == text
    loop_thread = threading.current_thread().name
    assert threads[0] == loop_thread  # cheap: no thread hop
    assert threads[1] != loop_thread
