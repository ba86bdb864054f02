"""A client of the gateway's Files and Batch APIs (`/v1/files`, `/v1/batches`, OpenAI's shape).

Every answer is checked field by field before it is used (a pydantic model per object, strict:
a gateway's bug or a proxy's page is a GatewayError naming the field, never a traceback), and
every id that goes back into a URL must look like an id.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, NonNegativeInt, StringConstraints, ValidationError

from ocrflux.cli.client import (
    Busy,
    GatewayError,
    describe_error,
    first_problem,
    gateway_http,
    gateway_root,
    refusal_of,
)

OCR_ENDPOINT = "/v1/ocr"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class FileObject(_Strict):
    id: Id


class RequestCounts(_Strict):
    total: NonNegativeInt = 0
    completed: NonNegativeInt = 0
    failed: NonNegativeInt = 0

    @property
    def done(self) -> int:
        return self.completed + self.failed


class BatchError(_Strict):
    code: str | None = None
    message: str | None = None
    line: int | None = None


class BatchErrors(_Strict):
    data: list[BatchError] = []


class Batch(_Strict):
    """The fields of OpenAI's `Batch` the CLI reads."""

    id: Id
    status: Literal[
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "failed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    endpoint: str = ""
    input_file_id: Id | None = None
    output_file_id: Id | None = None
    error_file_id: Id | None = None
    created_at: NonNegativeInt = 0
    request_counts: RequestCounts | None = None
    errors: BatchErrors | None = None
    metadata: dict[str, str] | None = None

    @property
    def counts(self) -> RequestCounts:
        return self.request_counts or RequestCounts()

    @property
    def ended(self) -> bool:
        return self.status in ENDED


class BatchPage(_Strict):
    data: list[Batch]
    has_more: bool = False


class LineResponse(_Strict):
    status_code: int
    body: Any = None


class LineError(_Strict):
    code: str | None = None
    message: str | None = None


class OutputLine(_Strict):
    """One line of a batch's output or error file."""

    custom_id: str
    response: LineResponse | None = None
    error: LineError | None = None


class Refused(GatewayError):
    """The gateway answered, and asking again will not change its mind (401, 403, 404)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason, fatal=True)
        self.status = status


class BatchClient:
    """Files and batches of one gateway; share one per run (one connection pool)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = gateway_root(base_url)
        self.retries = retries
        self._http = gateway_http(self.base_url, api_key, timeout, transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def upload(self, filename: str, data: bytes, purpose: str) -> str:
        """The id of the new file."""
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        try:
            response = await self._send(
                "POST",
                "/v1/files",
                files={"file": (filename, data, mime)},
                data={"purpose": purpose},
            )
        except Refused as exc:
            if exc.status != 404:
                raise
            raise Refused(
                f"the gateway at {self.base_url} has no Files API (POST /v1/files answered HTTP "
                "404): it predates batch jobs; convert without --batch",
                404,
            ) from None
        return _model(FileObject, _json(response), "file").id

    async def delete(self, file_id: str) -> None:
        """Delete a file; one already gone is no error."""
        try:
            await self._send("DELETE", f"/v1/files/{_id(file_id)}")
        except Refused as exc:
            if exc.status != 404:
                raise

    async def create(self, input_file_id: str, metadata: dict[str, str]) -> Batch:
        body = {
            "input_file_id": input_file_id,
            "endpoint": OCR_ENDPOINT,
            "completion_window": "24h",
            "metadata": metadata,
        }
        return _model(Batch, _json(await self._send("POST", "/v1/batches", json=body)), "batch")

    async def get(self, batch_id: str) -> Batch:
        response = await self._send("GET", f"/v1/batches/{_id(batch_id)}")
        return _model(Batch, _json(response), "batch")

    async def cancel(self, batch_id: str) -> Batch:
        response = await self._send("POST", f"/v1/batches/{_id(batch_id)}/cancel")
        return _model(Batch, _json(response), "batch")

    async def list(self, limit: int, after: str | None = None) -> BatchPage:
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["after"] = _id(after)
        response = await self._send("GET", "/v1/batches", params=params)
        return _model(BatchPage, _json(response), "batch list")

    async def content(self, file_id: str) -> AsyncIterator[OutputLine | GatewayError]:
        """A batch's output or error file, line by line as it arrives (a line that is not
        one is yielded as its GatewayError, so the others are still read)."""
        url = f"/v1/files/{_id(file_id)}/content"
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise refusal_of(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield parse_line(line)
        except Busy as busy:
            raise GatewayError(busy.reason) from None
        except httpx.HTTPError as exc:
            raise GatewayError(
                f"the download of {file_id} failed: {describe_error(exc)}", fatal=True
            ) from None

    async def input_lines(self, file_id: str) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of a batch's input file (others skipped: this is only a hint)."""
        url = f"/v1/files/{_id(file_id)}/content"
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    return
                async for line in response.aiter_lines():
                    try:
                        data = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(data, dict):
                        yield data
        except httpx.HTTPError:
            return

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The answer of a 2xx, asked again after a 429 or 503 (GatewayError otherwise)."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                fatal = isinstance(exc, httpx.ConnectError)
                raise GatewayError(
                    f"connection to the gateway failed: {describe_error(exc)}", fatal=fatal
                ) from None
            if 200 <= response.status_code <= 299:
                return response
            refusal = refusal_of(response)
            if response.status_code in (401, 403, 404):
                raise Refused(str(refusal), response.status_code)
            if not isinstance(refusal, Busy):
                raise refusal
            attempt += 1
            if attempt > self.retries:
                raise GatewayError(refusal.reason)
            await asyncio.sleep(refusal.wait if refusal.wait is not None else 2.0**attempt)


def valid_id(value: str) -> bool:
    """True when `value` looks like a batch or file id (safe in a URL path)."""
    return re.fullmatch(ID_PATTERN, value) is not None


def _id(value: str) -> str:
    """An id for a URL path: one that cannot step out of it (`..`, `/`, `?`)."""
    if not valid_id(value):
        raise GatewayError(f"{value[:80]!r} is not a batch or file id", fatal=True)
    return value


def parse_line(raw: str) -> OutputLine | GatewayError:
    """One line of an output or error file, or why it is not one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return GatewayError("a line of the batch's results is not JSON")
    try:
        return _model(OutputLine, data, "result line")
    except GatewayError as exc:
        return exc


def _model(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise GatewayError(f"the gateway's {what} is not valid: {first_problem(exc)}") from None


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise GatewayError(
            f"the gateway's answer to {response.request.method} {response.request.url.path} "
            "is not JSON"
        ) from None
