"""What happens to a chat completion: prepare images, then forward (passthrough) or read pages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from ocrflux.engines.base import BACKEND_HEADER
from ocrflux.errors import APIError, check_image_count, from_validation_error, request_timeout
from ocrflux.format.checkboxes import normalize_checkboxes
from ocrflux.http.sse import EventStream, ModelRewriter, relay
from ocrflux.intake.images import ImageRejected, PreparedImage, Probe
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.intake.tokens import ContextTooSmall, estimate_text_tokens
from ocrflux.metrics import record_images
from ocrflux.pages import PageReader
from ocrflux.protocol import ChatCompletionRequest, file_param, image_param, json_response
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.chat")
T = TypeVar("T")


class ChatService:
    """Turns a client's chat-completion JSON into the client's response."""

    def __init__(
        self, settings: Settings, upstream: Upstream, images: ImagePreparer, pages: PageReader
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.images = images
        self.pages = pages

    async def complete(
        self, raw: dict[str, Any], request_id: str, deadline: float | None = None
    ) -> Response:
        """Validate, prepare and answer one request (`raw` is the client's JSON, owned here).

        `deadline` (event-loop time) is when TOTAL_TIMEOUT runs out: streams end there too.
        """
        self.check_counts(raw)
        try:
            request = ChatCompletionRequest.model_validate(raw)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        if self.settings.prompt_mode == "ocrflux" and request.document_parts():
            return await self.pages.respond(request, request_id, deadline)
        if self.settings.ocr_backend == "local":
            raise APIError(
                400,
                "the request has no page image or document: with OCR_BACKEND=local the gateway "
                "reads pages with its embedded OCR engine and has no language model to answer "
                "text",
                param="messages",
                code="unsupported_content",
            )
        files = [(i, j) for i, j, part in request.document_parts() if part.type == "file"]
        if files:
            raise APIError(
                400,
                "file parts (PDFs and other documents) are read in PROMPT_MODE=ocrflux only; "
                "send page images as image_url parts",
                param=file_param(*files[0]),
                code="unsupported_content",
            )
        images = await self.prepare_images(request)
        body = await self.passthrough_body(raw, request, images)
        model, stream = request.model, request.stream
        # Only `body` is needed from here: a request waiting for vLLM then holds its images
        # once (in the body), not also in the parsed JSON the validated model shares.
        del raw, request, images
        response = await self.forward(body, model, stream, request_id, deadline)
        response.headers[BACKEND_HEADER] = "vllm"  # vLLM's own answer, whatever the fallback
        return response

    def check_counts(self, raw: dict[str, Any]) -> None:
        """Refuse too many messages or content parts before validating them one by one.

        Validation costs ~5 us per part: 2,000,000 empty text parts held the event loop 9 s.
        """
        messages = raw.get("messages")
        if not isinstance(messages, list):
            return  # validation says what is wrong
        limit = self.settings.max_messages_per_request
        if len(messages) > limit:
            raise APIError(
                400,
                f"the request has {len(messages):,} messages, the limit is {limit:,}",
                param="messages",
                code="too_many_messages",
            )
        limit, parts = self.settings.max_content_parts_per_request, 0
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            parts += len(content) if isinstance(content, list) else 1
            if parts > limit:
                raise APIError(
                    400,
                    f"the request has more than {limit:,} content parts "
                    f"(messages[0..{i}] hold {parts:,})",
                    param=f"messages[{i}].content",
                    code="too_many_content_parts",
                )

    async def passthrough_body(
        self, raw: dict[str, Any], request: ChatCompletionRequest, images: list[PreparedImage]
    ) -> bytes:
        """The client's own JSON with prepared images, our model name, and no gateway fields."""
        if images:
            images = await self.fit_to_context(images, request)
            for (i, j, _), image in zip(request.image_parts(), images, strict=True):
                raw["messages"][i]["content"][j]["image_url"]["url"] = image.data_url
        raw["model"] = self.settings.ocrflux_model
        raw.pop("output_format", None)
        raw.pop("skip_cross_page_merge", None)
        return orjson.dumps(raw)

    async def prepare_images(self, request: ChatCompletionRequest) -> list[PreparedImage]:
        """Every image of the request, prepared (in order).

        Headers first: when they already show that the images cannot fit the context, the
        request is refused before any pixel is decoded; when they must shrink to fit, each is
        decoded once, straight to the size that fits.
        """
        parts = request.image_parts()
        check_image_count(len(parts), self.settings.max_images_per_request)
        if not parts:
            return []
        probes = await gather_or_cancel(self._probe(i, j, image.url) for i, j, image in parts)
        cap = self._plan(probes, request)
        prepared = await gather_or_cancel(
            self._finish(i, j, probe, cap) for (i, j, _), probe in zip(parts, probes, strict=True)
        )
        record_images(len(prepared))
        return prepared

    async def _probe(self, message: int, part: int, url: str) -> Probe:
        try:
            return await self.images.probe(url)
        except ImageRejected as exc:
            raise _invalid_image(exc, image_param(message, part)) from exc

    async def _finish(
        self, message: int, part: int, probe: Probe, cap: int | None
    ) -> PreparedImage:
        try:
            return await self.images.finish(probe, cap)
        except ImageRejected as exc:
            raise _invalid_image(exc, image_param(message, part)) from exc

    def _plan(self, probes: list[Probe], request: ChatCompletionRequest) -> int | None:
        """The longest side that fits the request in the context (None: no cap needed)."""
        sizes = [probe.size_after(self.images.options) for probe in probes]
        try:
            return self.images.plan(sizes, _text_tokens(request), request.token_limit or 0)
        except ContextTooSmall as exc:
            raise _context_exceeded(exc) from exc

    async def fit_to_context(
        self, images: list[PreparedImage], request: ChatCompletionRequest
    ) -> list[PreparedImage]:
        try:
            return await self.images.fit(images, _text_tokens(request), request.token_limit or 0)
        except ContextTooSmall as exc:
            raise _context_exceeded(exc) from exc
        except ImageRejected as exc:  # an image that could not be decoded to shrink it
            raise _invalid_image(exc, "messages") from exc

    async def forward(
        self, body: bytes, model: str, stream: bool, request_id: str, deadline: float | None = None
    ) -> Response:
        """Send a body to vLLM; answer with the client's model name (passthrough, text-only)."""
        if stream:
            response = await self.upstream.send(body, request_id)
            rewrite = ModelRewriter(self.settings.ocrflux_model, model)
            events = relay(
                response,
                rewrite,
                deadline=deadline,
                late=request_timeout(self.settings.total_timeout),
                max_event_bytes=self.settings.max_upstream_body_bytes,
            )
            return EventStream(
                events, write_timeout=self.settings.client_write_timeout, on_close=response.aclose
            )
        data = await self.upstream.chat(body, request_id)
        data["model"] = model
        if self.settings.passthrough_checkboxes:
            for choice in data["choices"]:
                message = choice.get("message") or {}
                if isinstance(message.get("content"), str):
                    message["content"] = normalize_checkboxes(message["content"])
        return json_response(data)


def _text_tokens(request: ChatCompletionRequest) -> int:
    return estimate_text_tokens("\n".join(m.text() for m in request.messages))


def _invalid_image(exc: ImageRejected, param: str) -> APIError:
    return APIError(exc.status, exc.message, param=param, code="invalid_image")


def _context_exceeded(exc: ContextTooSmall) -> APIError:
    return APIError(exc.status, exc.message, param="messages", code="context_length_exceeded")


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """`asyncio.gather`, but the first failure cancels the rest (and so their queued image
    work): one refused image ends the request's work at once."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the finished ones
