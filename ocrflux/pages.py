"""OCRFlux mode for chat: every image is a page, every PDF a document, read and then shaped.

The request's image and file parts become one sequence of pages (a composite document) that
the documents pipeline reads; pages of one PDF are merged across page breaks as the toolkit
does, images stay pages of their own. The client's messages only choose the output format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

from starlette.responses import Response

from ocrflux.documents.limits import DocumentPages, PageLimits
from ocrflux.documents.loading import Composite, DocumentLoader, ImagePart
from ocrflux.documents.pipeline import (
    DocumentEvent,
    DocumentOutcome,
    DocumentRead,
    DocumentReader,
    PageRead,
    PageSource,
)
from ocrflux.engines.base import BACKEND_HEADER, PageJob, engines_used
from ocrflux.errors import APIError, check_image_count, request_timeout
from ocrflux.format.page import PageResponse
from ocrflux.format.shaping import infer_output_format, shape_document, shape_pages
from ocrflux.http.sse import DONE, EventStream, event
from ocrflux.metrics import record_images
from ocrflux.protocol import (
    ChatCompletionRequest,
    ContentPart,
    OutputFormat,
    chunk_body,
    completion_body,
    file_param,
    image_param,
    json_response,
    new_completion_id,
)
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux.pages")
T = TypeVar("T")

FALLBACK_HEADER = "X-OCRFlux-Fallback-Pages"
# Page text up to this many characters is shaped on the event loop (0.1-3 us per character,
# tables and checkbox forms the most: ~12 ms at worst); more goes to a thread, so a long
# answer never holds up other clients.
SHAPE_ON_LOOP_LIMIT = 4_000


class PageReader:
    """OCRFlux mode for a chat request: its parts read as pages of documents, then shaped."""

    def __init__(self, settings: Settings, loader: DocumentLoader, reader: DocumentReader) -> None:
        self.settings = settings
        self.loader = loader
        self.reader = reader
        self.limits = PageLimits.from_settings(settings)

    async def respond(
        self, request: ChatCompletionRequest, request_id: str, deadline: float | None = None
    ) -> Response:
        """Read every image and document of the request and answer it; a stream ends at
        `deadline` (event-loop time: TOTAL_TIMEOUT) with an error event.

        Page calls follow the toolkit whatever the client's sampling fields say; only its
        max_tokens (or max_completion_tokens) is honoured, as a cap on each page's answer.
        The request fails only when the client's request cannot work (the engine raises) or
        when no page could be read at all; other failed pages are fallback pages."""
        if request.n != 1:
            raise APIError(400, "n must be 1 in ocrflux mode", param="n", code="invalid_value")
        fmt: OutputFormat = request.output_format or infer_output_format(request.system_prompt())
        job = PageJob(request_id, max_tokens=request.token_limit)
        source = await self._open(request, job)
        merge = not request.skip_cross_page_merge and any(
            source.joins(i) for i in range(source.num_pages)
        )
        events = self._events(source, job, merge)
        if request.stream:
            answer = _Stream(request, fmt, self.settings, merged=merge, deadline=deadline)
            response = EventStream(
                answer.events(events),
                write_timeout=self.settings.client_write_timeout,
                on_close=events.aclose,  # also when the stream never started
            )
            # Pages are not read yet: the header names the engine they are expected to go to,
            # the final chunk's `ocrflux_backend` the engines that did read them.
            response.headers[BACKEND_HEADER] = self.reader.engine.name
            return response
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                async for item in events:
                    if isinstance(item, DocumentRead):
                        return await self._completion(item.outcome, request, fmt)
        finally:
            await events.aclose()
        raise AssertionError("the pipeline ended without a result")  # pragma: no cover

    async def _open(self, request: ChatCompletionRequest, job: PageJob) -> Composite:
        """Every image and file part as a source of pages, in order.

        Headers first: images are probed and documents opened, then pages the engine cannot
        read for this request are refused before any pixel is decoded; only then are the
        images decoded (concurrently, in the image pool).
        """
        parts = request.document_parts()
        check_image_count(len(parts), self.settings.max_images_per_request)
        opened: list[PageSource | ImagePart] = []
        try:
            opened = await gather_or_close(self._open_part(i, j, part) for i, j, part in parts)
            self.limits.check([_pages_of(part) for part in opened])
            images = [part for part in opened if isinstance(part, ImagePart)]
            record_images(len(images))
            sizes = [part.size(self.loader.images.options) for part in images]
            for width, height in dict.fromkeys(sizes):
                self.reader.engine.check_page(width, height, job)
            sources = await gather_or_close(
                self.loader.finish(part) if isinstance(part, ImagePart) else _ready(part)
                for part in opened
            )
        except BaseException:
            for part in opened:
                if not isinstance(part, ImagePart):
                    await part.aclose()
            raise
        return Composite(sources)

    async def _open_part(
        self, message: int, index: int, part: ContentPart
    ) -> PageSource | ImagePart:
        if part.file is not None and part.file.file_data is not None:
            return await self.loader.chat_file(part.file.file_data, file_param(message, index))
        assert part.image_url is not None
        return await self.loader.chat_image(part.image_url.url, image_param(message, index))

    async def _events(
        self, source: Composite, job: PageJob, merge: bool
    ) -> AsyncGenerator[DocumentEvent, None]:
        try:
            pages = range(source.num_pages)
            async for item in self.reader.read(source, pages, job, merge=merge, fallback_text=True):
                yield item
        finally:
            await source.aclose()

    async def _completion(
        self, outcome: DocumentOutcome, request: ChatCompletionRequest, fmt: OutputFormat
    ) -> Response:
        content = await _shape(outcome, fmt, self.settings.keep_image_placeholders)
        body = completion_body(
            new_completion_id(), request.model, content, outcome.usage, _finish_reason(outcome)
        )
        headers = {BACKEND_HEADER: engines_used(p.result for p in outcome.pages)}
        fallback = _fallback_numbers(outcome)
        if fallback:
            headers[FALLBACK_HEADER] = ",".join(map(str, fallback))
        return json_response(body, headers=headers)


class _Stream:
    """A chat completion streamed: a chunk per page as it is read, or the merged document."""

    def __init__(
        self,
        request: ChatCompletionRequest,
        fmt: OutputFormat,
        settings: Settings,
        merged: bool,
        deadline: float | None = None,
    ) -> None:
        self.request = request
        self.fmt = fmt
        self.settings = settings
        # TOTAL_TIMEOUT from the request's start (`deadline`, event-loop time), else from now.
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + settings.total_timeout
        self.deadline, self.limit = deadline, settings.total_timeout
        # With a cross-page merge the text is final only at the end: pages then show as SSE
        # comments (progress that clients ignore), and the merged document is sent whole.
        self.per_page = not merged and fmt != "json"
        self.id = new_completion_id()

    def chunk(self, delta: dict[str, Any], **extra: Any) -> bytes:
        return event(chunk_body(self.id, self.request.model, delta, **extra))

    async def events(self, items: AsyncGenerator[DocumentEvent, None]) -> AsyncIterator[bytes]:
        keep = self.settings.keep_image_placeholders
        sent = 0
        try:
            yield self.chunk({"role": "assistant", "content": ""})
            while True:
                # Only the wait for the pipeline is timed, never a yield: a timeout that
                # fired while the client was being written to would cancel the wrong await.
                try:
                    async with asyncio.timeout_at(self.deadline):
                        item = await anext(items)
                except StopAsyncIteration:
                    break
                if isinstance(item, PageRead):
                    if not self.per_page:
                        yield f": page {item.done}/{item.total} read\n\n".encode()
                        continue
                    text = await _shape_pages([item.page.result.shaped_input], self.fmt, keep)
                    if text:
                        yield self.chunk({"content": text if not sent else "\n\n" + text})
                        sent += 1
                elif isinstance(item, DocumentRead):
                    outcome = item.outcome
                    if not self.per_page:
                        yield self.chunk({"content": await _shape(outcome, self.fmt, keep)})
                    final = chunk_body(
                        self.id, self.request.model, {}, finish_reason=_finish_reason(outcome)
                    )
                    fallback = _fallback_numbers(outcome)
                    if fallback:
                        final["ocrflux_fallback_pages"] = fallback
                    final["ocrflux_backend"] = engines_used(p.result for p in outcome.pages)
                    yield event(final)
                    if self.request.include_usage:
                        yield self.chunk({}, usage=outcome.usage)
            yield DONE
        except TimeoutError:
            logger.warning("stream cut at the request's deadline (%g s)", self.limit)
            yield event(request_timeout(self.limit).body())
            yield DONE
        except APIError as exc:
            yield event(exc.body())
            yield DONE
        finally:
            await items.aclose()


async def _shape(outcome: DocumentOutcome, fmt: OutputFormat, keep_images: bool) -> str:
    """The answer's content: per-page objects for `json`, else the (merged) document shaped."""
    if fmt == "json":
        return await _shape_pages([p.result.shaped_input for p in outcome.pages], fmt, keep_images)
    return await _off_loop_if_long(len(outcome.text), partial(shape_document, outcome.text, fmt))


async def _shape_pages(pages: list[PageResponse | str], fmt: OutputFormat, keep: bool) -> str:
    size = sum(len(p if isinstance(p, str) else p.natural_text or "") for p in pages)
    return await _off_loop_if_long(
        size, partial(shape_pages, pages, fmt, keep_image_placeholders=keep)
    )


async def _off_loop_if_long(size: int, shape: Callable[[], str]) -> str:
    """Run `shape` here when the text is short, in a thread when it is long."""
    return shape() if size <= SHAPE_ON_LOOP_LIMIT else await asyncio.to_thread(shape)


def _pages_of(part: PageSource | ImagePart) -> DocumentPages:
    if isinstance(part, ImagePart):
        return DocumentPages(1, part.param)
    return DocumentPages(part.num_pages, part.param(0))


async def _ready(source: PageSource) -> PageSource:
    return source


async def gather_or_close(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """`asyncio.gather`, but the first failure cancels the rest (their queued work too) and
    closes the documents that did open."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                opened = await task
                if hasattr(opened, "aclose"):
                    await opened.aclose()
        raise


def _fallback_numbers(outcome: DocumentOutcome) -> list[int]:
    """1-based positions of the pages that fell back (chat counts pages from 1)."""
    return [n for n, page in enumerate(outcome.pages, start=1) if page.fallback]


def _finish_reason(outcome: DocumentOutcome) -> str:
    cut = any(p.result.finish_reason == "length" for p in outcome.pages)
    return "length" if cut else "stop"
