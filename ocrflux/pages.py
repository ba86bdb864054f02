"""OCRFlux mode for chat: every image is a page, read by the page engine, then shaped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial

from starlette.responses import Response, StreamingResponse

from ocrflux.engines import PageEngine, PageJob, PageResult
from ocrflux.errors import APIError
from ocrflux.images import PreparedImage
from ocrflux.page_format import PageResponse
from ocrflux.protocol import (
    ChatCompletionRequest,
    OutputFormat,
    Usage,
    chunk_body,
    completion_body,
    image_param,
    json_response,
    new_completion_id,
)
from ocrflux.settings import Settings
from ocrflux.shaping import infer_output_format, shape_pages
from ocrflux.sse import DONE, SSE_HEADERS, event

logger = logging.getLogger("ocrflux.pages")

FALLBACK_HEADER = "X-OCRFlux-Fallback-Pages"
# Page text up to this many characters is shaped on the event loop (0.1-3 us per character,
# tables and checkbox forms the most: ~12 ms at worst); more goes to a thread, so a long
# answer never holds up other clients.
SHAPE_ON_LOOP_LIMIT = 4_000


class PageReader:
    """OCRFlux mode for a chat request: every image is a page, read by the engine, shaped."""

    def __init__(self, settings: Settings, engine: PageEngine) -> None:
        self.settings = settings
        self.engine = engine

    async def _shape(self, pages: list[PageResponse | str], fmt: OutputFormat) -> str:
        """`shape_pages`, in a thread when the text is long."""
        size = sum(len(p if isinstance(p, str) else p.natural_text or "") for p in pages)
        shape = partial(
            shape_pages, pages, fmt, keep_image_placeholders=self.settings.keep_image_placeholders
        )
        return shape() if size <= SHAPE_ON_LOOP_LIMIT else await asyncio.to_thread(shape)

    def check_pages(self, sizes: Sequence[tuple[int, int]], request: ChatCompletionRequest) -> None:
        """Refuse, before any pixel is decoded, pages the engine cannot read for this request
        (sizes as the pages will be sent)."""
        job = PageJob("", max_tokens=request.token_limit)
        for width, height in dict.fromkeys(sizes):
            self.engine.check_page(width, height, job)

    async def _read(self, image: PreparedImage, job: PageJob, param: str) -> PageResult:
        """One page; an image the engine could not decode is named by its part."""
        try:
            return await self.engine.read_page(image, job)
        except APIError as exc:
            if exc.code == "invalid_image" and exc.param is None:
                exc.param = param
            raise

    async def respond(
        self, images: list[PreparedImage], request: ChatCompletionRequest, request_id: str
    ) -> Response:
        """Read every image as a page and answer the request.

        Page calls follow the toolkit whatever the client's sampling fields say; only its
        max_tokens (or max_completion_tokens) is honoured, as a cap on each page's answer.
        The request fails only when the client's request cannot work (the engine raises) or
        when no page could be read at all; other failed pages are fallback pages."""
        if request.n != 1:
            raise APIError(400, "n must be 1 in ocrflux mode", param="n", code="invalid_value")
        fmt: OutputFormat = request.output_format or infer_output_format(request.system_prompt())
        job = PageJob(request_id, max_tokens=request.token_limit)
        params = [image_param(i, j) for i, j, _ in request.image_parts()]
        tasks = [
            asyncio.ensure_future(self._read(image, job, param))
            for image, param in zip(images, params, strict=True)
        ]
        if request.stream:
            return StreamingResponse(
                self._stream(tasks, request, fmt),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        unread = _unread(results)
        if unread is not None:
            raise unread
        usage = Usage()
        for result in results:
            usage.add(result.usage.model_dump())
        content = await self._shape([r.shaped_input for r in results], fmt)
        body = completion_body(
            new_completion_id(), request.model, content, usage, _finish_reason(results)
        )
        fallback = [str(n) for n, r in enumerate(results, start=1) if r.page is None]
        headers = {FALLBACK_HEADER: ",".join(fallback)} if fallback else None
        return json_response(body, headers=headers)

    async def _stream(
        self,
        tasks: Sequence[asyncio.Future[PageResult]],
        request: ChatCompletionRequest,
        fmt: OutputFormat,
    ) -> AsyncIterator[bytes]:
        """One content chunk per page, in page order, as soon as that page is done."""
        cid, model, usage = new_completion_id(), request.model, Usage()
        results: list[PageResult] = []
        sent = False  # any page text yet (the separator goes between pages, as unstreamed)
        try:
            yield event(chunk_body(cid, model, {"role": "assistant", "content": ""}))
            for task in tasks:
                result = await task
                results.append(result)
                usage.add(result.usage.model_dump())
                if fmt == "json":
                    continue  # one JSON document: sent whole once every page is read
                text = await self._shape([result.shaped_input], fmt)
                if text:
                    yield event(
                        chunk_body(cid, model, {"content": "\n\n" + text if sent else text})
                    )
                    sent = True
            unread = _unread(results)
            if unread is not None:
                raise unread
            if fmt == "json":
                text = await self._shape([r.shaped_input for r in results], fmt)
                yield event(chunk_body(cid, model, {"content": text}))
            final = chunk_body(cid, model, {}, finish_reason=_finish_reason(results))
            fallback = [n for n, r in enumerate(results, start=1) if r.page is None]
            if fallback:
                final["ocrflux_fallback_pages"] = fallback
            yield event(final)
            if request.include_usage:
                yield event(chunk_body(cid, model, {}, usage=usage))
            yield DONE
        except APIError as exc:
            # As vLLM ends a failed stream: the error event, then [DONE].
            yield event(exc.body())
            yield DONE
        except Exception:
            logger.exception("page stream failed")
            internal = APIError(500, "internal error in the gateway", code="internal_error")
            yield event(internal.body())
            yield DONE
        finally:
            for task in tasks:
                task.cancel()


def _unread(results: list[PageResult]) -> APIError | None:
    """The error to answer with when no page could be read at all (else None)."""
    errors = [r.error for r in results]
    return errors[0] if errors and all(errors) else None


def _finish_reason(results: list[PageResult]) -> str:
    return "length" if any(r.finish_reason == "length" for r in results) else "stop"
