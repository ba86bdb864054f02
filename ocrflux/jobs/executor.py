"""Running one batch line: the same service, validation, pipeline and errors as the endpoint
it names, as background work.

A line's body is parsed with the same bounds as a request body, then handed to the chat
service (`/v1/chat/completions`) or the OCR service (`/v1/ocr`) exactly as their routes hand
it over; whatever they answer or refuse is the line's result (status and body). Streaming
makes no sense in a batch and is refused per line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response

from ocrflux import inline_data
from ocrflux.chat import ChatService
from ocrflux.documents.service import OCRService
from ocrflux.errors import APIError, request_timeout
from ocrflux.http.json_body import BodyShape, parse_object
from ocrflux.jobs.records import ClaimedLine, LineResult
from ocrflux.jobs.storage import FileStorage
from ocrflux.observability import RequestLog, request_id_var, request_log_var
from ocrflux.settings import Settings
from ocrflux.work_class import background_work

logger = logging.getLogger("ocrflux.jobs")

CHAT, OCR = "/v1/chat/completions", "/v1/ocr"
ENDPOINTS = (CHAT, OCR)
# Line bodies up to this size are parsed on the event loop; larger ones in a thread.
PARSE_ON_LOOP = 256 * 1024


def line_request_id(batch_id: str, line_no: int) -> str:
    return f"{batch_id}-{line_no}"


class LineExecutor:
    """`await run(line)`: the line's result, never an exception (but cancellation)."""

    def __init__(
        self, settings: Settings, storage: FileStorage, chat: ChatService, ocr: OCRService
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.chat = chat
        self.ocr = ocr

    async def run(self, line: ClaimedLine) -> LineResult:
        request_id = line_request_id(line.batch_id, line.line_no)
        id_token = request_id_var.set(request_id)
        log_token = request_log_var.set(RequestLog(request_id))
        try:
            with background_work():
                response = await self._answer(line, request_id)
            body = bytes(response.body)
            if len(body) <= PARSE_ON_LOOP:
                return _result(response.status_code, body, request_id)
            return await asyncio.to_thread(_result, response.status_code, body, request_id)
        except APIError as exc:
            return _result(exc.status, orjson.dumps(exc.body()), request_id)
        except Exception:
            logger.exception("batch line %s failed unexpectedly", request_id)
            error = APIError(500, "internal error in the gateway", code="internal_error")
            return _result(500, orjson.dumps(error.body()), request_id)
        finally:
            request_log_var.reset(log_token)
            request_id_var.reset(id_token)

    async def _answer(self, line: ClaimedLine, request_id: str) -> Response:
        body = await self._body(line)
        if body.get("stream"):
            raise APIError(
                400, "stream is not supported in a batch", param="body.stream", code="invalid_value"
            )
        if line.endpoint == CHAT:
            return await _within(
                self.settings.total_timeout, lambda: self.chat.complete(body, request_id)
            )
        if line.model and "model" not in body:  # Mistral: the job's model applies
            body["model"] = line.model
        return await self.ocr.answer(body, None, request_id, owner=line.owner)

    async def _body(self, line: ClaimedLine) -> dict[str, Any]:
        """The line's `body`, parsed with the bounds a request body gets (items, depth)."""
        raw = await self.storage.read_range(line.storage_key, line.offset, line.length)
        shape = BodyShape()
        shape.add(raw)
        inline_data.start()  # here, not in the thread: the line's work must see its payloads
        limit = self.settings.max_json_items + 16  # the line's own few fields
        if len(raw) <= PARSE_ON_LOOP:
            data = parse_object(raw, shape, limit)
        else:
            data = await asyncio.to_thread(parse_object, raw, shape, limit)
        del raw
        body = data.get("body")
        if not isinstance(body, dict):  # validation saw it; the file may have changed since
            raise APIError(400, "body must be a JSON object", param="body", code="invalid_body")
        return body


async def _within(seconds: float, work: Callable[[], Awaitable[Response]]) -> Response:
    try:
        async with asyncio.timeout(seconds):
            return await work()
    except TimeoutError:
        raise request_timeout(seconds) from None


def _result(status: int, body: bytes, request_id: str) -> LineResult:
    prompt = completion = 0
    if 200 <= status <= 299:
        try:
            usage = orjson.loads(body).get("usage") or {}
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            pass
    return LineResult(status, body, request_id, prompt, completion)
