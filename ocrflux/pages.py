"""OCRFlux mode: every image is a page, read with the trained prompt, decoded and shaped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from ocrflux.errors import APIError
from ocrflux.images import ImageRejected, PreparedImage
from ocrflux.page_format import PageResponse, build_page_prompt, parse_page_response
from ocrflux.preparation import ImagePreparer
from ocrflux.protocol import (
    ChatCompletionRequest,
    OutputFormat,
    Usage,
    chunk_body,
    completion_body,
    json_response,
    new_completion_id,
)
from ocrflux.settings import Settings
from ocrflux.shaping import infer_output_format, shape_pages
from ocrflux.sse import DONE, SSE_HEADERS, event
from ocrflux.tokens import estimate_text_tokens
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.pages")

FALLBACK_HEADER = "X-OCRFlux-Fallback-Pages"
# Client sampling fields that make sense for a page call; `stop`, `n`, tools etc. do not.
PAGE_SAMPLING_FIELDS = (
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)
# The OCRFlux toolkit raises the temperature by this much for each re-ask of a page.
TEMPERATURE_STEP = 0.1
# The toolkit samples with vLLM's SamplingParams defaults. vLLM's server instead defaults to the
# model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05), under
# which a higher temperature changes nothing; so page calls state the toolkit's values.
TOOLKIT_SAMPLING = {"top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0}


@dataclass
class PageResult:
    """One page's outcome: the decoded response, or the raw text when decoding failed."""

    page: PageResponse | None
    raw_text: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)

    @property
    def shaped_input(self) -> PageResponse | str:
        return self.page if self.page is not None else self.raw_text


class PageReader:
    """Runs the page pipeline for one request: prepare -> ask -> decode -> shape."""

    def __init__(self, settings: Settings, upstream: Upstream, images: ImagePreparer) -> None:
        self.settings = settings
        self.upstream = upstream
        self.images = images
        self.prompt = build_page_prompt()
        self._prompt_tokens = estimate_text_tokens(self.prompt)

    async def read_page(
        self, image: PreparedImage, sampling: dict[str, Any], request_id: str
    ) -> PageResult:
        """Ask until the answer decodes (raising the temperature), fixing rotation once."""
        result = PageResult(page=None, raw_text="")
        base_temperature = float(sampling.get("temperature") or 0.0)
        attempt, rotated = 0, False
        while True:
            body = self._page_body(image, sampling, base_temperature + TEMPERATURE_STEP * attempt)
            data = await self.upstream.chat(body, request_id)
            result.usage.add(data.get("usage"))
            choice = data["choices"][0] if data["choices"] else {}
            result.raw_text = (choice.get("message") or {}).get("content") or ""
            result.finish_reason = choice.get("finish_reason") or "stop"
            page = parse_page_response(result.raw_text)
            if page is None:
                if attempt < self.settings.page_retries:
                    attempt += 1
                    continue
                logger.warning("page answer is not page JSON after %d attempts", attempt + 1)
                return result
            needs_rotation = not page.is_rotation_valid and page.rotation_correction in (
                90,
                180,
                270,
            )
            if needs_rotation and not rotated:
                image = await self.images.rotate(image, page.rotation_correction)
                rotated = True
                continue
            result.page = page
            return result

    def _page_body(
        self, image: PreparedImage, sampling: dict[str, Any], temperature: float
    ) -> bytes:
        content = [
            {"type": "image_url", "image_url": {"url": image.data_url}},
            {"type": "text", "text": self.prompt},
        ]
        body = {
            **sampling,
            "model": self.settings.ocrflux_model,
            "messages": [{"role": "user", "content": content}],
            "temperature": round(temperature, 3),
        }
        return orjson.dumps(body)

    def _sampling(self, raw: dict[str, Any], request: ChatCompletionRequest) -> dict[str, Any]:
        sampling = {**TOOLKIT_SAMPLING, **{k: raw[k] for k in PAGE_SAMPLING_FIELDS if k in raw}}
        sampling["max_tokens"] = request.token_limit or self.settings.page_max_tokens
        if request.temperature is not None:
            sampling["temperature"] = request.temperature
        return sampling

    async def _fit(self, image: PreparedImage, max_tokens: int) -> PreparedImage:
        try:
            (fitted,) = await self.images.fit([image], self._prompt_tokens, max_tokens)
        except ImageRejected as exc:
            raise APIError(
                exc.status, exc.message, param="messages", code="context_length_exceeded"
            ) from exc
        return fitted

    async def _read(
        self, image: PreparedImage, sampling: dict[str, Any], request_id: str
    ) -> PageResult:
        image = await self._fit(image, sampling["max_tokens"])
        return await self.read_page(image, sampling, request_id)

    async def respond(
        self,
        images: list[PreparedImage],
        raw: dict[str, Any],
        request: ChatCompletionRequest,
        request_id: str,
    ) -> Response:
        if request.n != 1:
            raise APIError(400, "n must be 1 in ocrflux mode", param="n", code="invalid_value")
        fmt: OutputFormat = request.output_format or infer_output_format(request.system_prompt())
        sampling = self._sampling(raw, request)
        tasks = [asyncio.ensure_future(self._read(im, sampling, request_id)) for im in images]
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
        usage = Usage()
        for result in results:
            usage.add(result.usage.model_dump())
        content = shape_pages(
            [r.shaped_input for r in results],
            fmt,
            keep_image_placeholders=self.settings.keep_image_placeholders,
        )
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
        try:
            yield event(chunk_body(cid, model, {"role": "assistant", "content": ""}))
            for number, task in enumerate(tasks, start=1):
                result = await task
                results.append(result)
                usage.add(result.usage.model_dump())
                if fmt == "json":
                    continue  # one JSON document: sent whole once every page is read
                text = shape_pages(
                    [result.shaped_input],
                    fmt,
                    keep_image_placeholders=self.settings.keep_image_placeholders,
                )
                yield event(
                    chunk_body(cid, model, {"content": text if number == 1 else "\n\n" + text})
                )
            if fmt == "json":
                text = shape_pages(
                    [r.shaped_input for r in results],
                    fmt,
                    keep_image_placeholders=self.settings.keep_image_placeholders,
                )
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
            yield event(exc.body())
        finally:
            for task in tasks:
                task.cancel()


def _finish_reason(results: list[PageResult]) -> str:
    return "length" if any(r.finish_reason == "length" for r in results) else "stop"
