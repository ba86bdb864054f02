"""A client of the gateway's `POST /v1/ocr`: one document uploaded, its progress streamed.

It speaks the public wire format only (multipart upload, then server-sent events `page`,
`merge`, `result` or `error`), so it works against any deployed gateway of this version.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse
from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError

# Statuses worth another try for a batch: the gateway (or vLLM behind it) is busy or away.
RETRY_STATUSES = frozenset({429, 503})
RETRY_AFTER_CAP = 30.0


class GatewayError(Exception):
    """A document the gateway did not convert; `fatal` when no other document can succeed
    either (the gateway is unreachable or refuses the API key)."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


@dataclass(frozen=True)
class OCROptions:
    """The `/v1/ocr` options a run passes for every document."""

    pages: str | None = None
    table_format: str | None = None
    skip_cross_page_merge: bool = False

    def form(self) -> dict[str, str]:
        fields = {"stream": "true"}
        if self.pages:
            fields["pages"] = self.pages
        if self.table_format:
            fields["table_format"] = self.table_format
        if self.skip_cross_page_merge:
            fields["skip_cross_page_merge"] = "true"
        return fields


@dataclass(frozen=True)
class PageProgress:
    """A `page` event: `done` of `total` pages of this document are read."""

    index: int
    done: int
    total: int
    fallback: bool


ProgressCallback = Callable[[PageProgress | None], None]  # None: the cross-page merge started


class _PageEvent(BaseModel):
    """The fields of a `page` event the CLI reads (strict: a gateway's bug is not coerced)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    index: NonNegativeInt = 0
    done: NonNegativeInt = 0
    total: NonNegativeInt = 0
    fallback: bool = False


class _Answer(BaseModel):
    """The fields of a document's answer the CLI reads or writes to the JSONL."""

    model_config = ConfigDict(strict=True, extra="ignore")

    document_text: str
    pages: list[Any] = []
    num_pages: NonNegativeInt | None = None
    page_texts: dict[str, str] = {}
    fallback_pages: list[NonNegativeInt] = []


def gateway_http(
    base_url: str,
    api_key: str | None,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
) -> httpx.AsyncClient:
    """The one connection pool a client class keeps to the gateway at `base_url`."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=10.0),
        transport=transport,
    )


class OCRClient:
    """Sends documents to one gateway; share one per run (one connection pool)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 3600.0,
        retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = gateway_root(base_url)
        self.retries = retries
        # A page can take minutes on a busy server: the read timeout is the document's.
        self._http = gateway_http(self.base_url, api_key, timeout, transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check(self) -> None:
        """Fail fast, once, when the gateway cannot be reached at all."""
        try:
            response = await self._http.get("/health", timeout=10.0)
        except httpx.HTTPError as exc:
            raise GatewayError(
                f"cannot reach the gateway at {self.base_url}: {describe_error(exc)}", fatal=True
            ) from None
        if response.status_code == 404:  # something answers there, but not this gateway
            raise GatewayError(
                f"no gateway at {self.base_url}: GET /health answered HTTP 404; --url is the "
                "gateway's base URL, like http://localhost:8000",
                fatal=True,
            )

    async def convert(
        self, filename: str, data: bytes, options: OCROptions, on_progress: ProgressCallback
    ) -> dict[str, Any]:
        """The document's `/v1/ocr` answer (Mistral's shape plus the toolkit's fields), its
        fields the CLI reads checked (GatewayError otherwise)."""
        attempt = 0
        while True:
            try:
                return await self._convert_once(filename, data, options, on_progress)
            except Busy as busy:
                attempt += 1
                if attempt > self.retries:
                    raise GatewayError(busy.reason) from None
                await asyncio.sleep(busy.wait if busy.wait is not None else 2.0**attempt)

    async def _convert_once(
        self, filename: str, data: bytes, options: OCROptions, on_progress: ProgressCallback
    ) -> dict[str, Any]:
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        try:
            async with aconnect_sse(
                self._http,
                "POST",
                "/v1/ocr",
                files={"file": (filename, data, mime)},
                data=options.form(),
            ) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    raise refusal_of(response)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()  # a gateway that answered without streaming
                    return checked_answer(_json(response))
                async for event in source.aiter_sse():
                    data_ = orjson.loads(event.data) if event.data else {}
                    if event.event == "page":
                        on_progress(_page(data_))
                    elif event.event == "merge":
                        on_progress(None)
                    elif event.event == "result":
                        return checked_answer(data_)
                    elif event.event == "error":
                        raise GatewayError(error_text(data_))
        except httpx.HTTPError as exc:
            fatal = isinstance(exc, httpx.ConnectError)
            reason = f"connection to the gateway failed: {describe_error(exc)}"
            raise GatewayError(reason, fatal=fatal) from None
        except orjson.JSONDecodeError:
            raise GatewayError("the gateway sent an event that is not JSON") from None
        raise GatewayError("the gateway ended the stream before the result")


def gateway_root(url: str) -> str:
    """The gateway's base URL: OpenAI clients are given `.../v1`, so that is accepted too."""
    return url.rstrip("/").removesuffix("/v1")


class Busy(Exception):
    """A 429 or 503: worth another try, after `wait` seconds when the gateway said."""

    def __init__(self, reason: str, wait: float | None) -> None:
        self.reason = reason
        self.wait = wait


def _page(data: Any) -> PageProgress:
    try:
        page = _PageEvent.model_validate(data)
    except ValidationError as exc:
        raise GatewayError(
            f"the gateway sent a page event that is not valid: {first_problem(exc)}"
        ) from None
    return PageProgress(page.index, page.done, page.total, page.fallback)


def checked_answer(data: Any) -> dict[str, Any]:
    """The answer as sent (its other fields go to the JSONL as they are), once every field
    the CLI reads is checked."""
    try:
        _Answer.model_validate(data)
    except ValidationError as exc:
        raise GatewayError(f"the gateway's answer is not valid: {first_problem(exc)}") from None
    assert isinstance(data, dict)
    data.pop("type", None)
    return data


def first_problem(exc: ValidationError) -> str:
    """The first problem pydantic found, as `field: what is wrong`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise GatewayError("the gateway's answer is not JSON") from None
    if not isinstance(body, dict):
        raise GatewayError("the gateway's answer is not a JSON object")
    return body


def refusal_of(response: httpx.Response) -> Exception:
    """The gateway's OpenAI-shaped error (or whatever a proxy sent instead) in words."""
    status = response.status_code
    try:
        text = error_text(orjson.loads(response.content))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
    reason = f"{text} (HTTP {status})"
    if status in RETRY_STATUSES:
        return Busy(reason, _retry_after(response))
    if status == 401:
        return GatewayError(f"{reason}; pass --api-key or set OCRFLUX_API_KEY", fatal=True)
    return GatewayError(reason)


def error_text(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return orjson.dumps(body).decode()[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        return None


def describe_error(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
