"""One upstream attempt's pieces: how a failure is classified, capped reads, the stream guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from ocrflux.errors import APIError
from ocrflux.upstream import errors
from ocrflux.upstream.replicas import Replica, ReplicaSet
from ocrflux.upstream.shapes import check_completion
from ocrflux.upstream.transport import BodyTooLarge, Timeouts

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# Failures before the upstream produced an answer: the call had no effect, a retry is safe.
RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
# A Retry-After longer than this is not worth waiting for inside one client request.
MAX_RETRY_AFTER = 30.0
# Failure kinds that say nothing bad about the replica itself.
NEUTRAL_KINDS = frozenset({"pool_timeout", "too_large", "status_4xx", "status_429"})


class AttemptFailed(Exception):
    """One attempt failed; `error` is what the client hears if no attempt is left.

    `elsewhere`: retried only on a replica not tried yet (a stuck or garbling replica asked
    again would only fail again, slowly).
    """

    def __init__(
        self,
        error: APIError,
        kind: str,
        retryable: bool,
        retry_after: float | None = None,
        *,
        elsewhere: bool = False,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.elsewhere = elsewhere


class TrackedStream(httpx.AsyncByteStream):
    """A streamed body that tells the replica set how the stream ended and frees its slot."""

    def __init__(
        self,
        inner: Any,
        replicas: ReplicaSet,
        replica: Replica,
        on_close: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._replicas = replicas
        self._replica = replica
        self._on_close: Callable[[], None] | None = on_close
        self._outcome: str | None = None  # "ok", or the failure kind; None: cut short by us

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            self._outcome = type(exc).__name__
            raise
        self._outcome = "ok"

    async def aclose(self) -> None:
        if self._on_close is None:
            return
        done, self._on_close = self._on_close, None
        try:
            await self._inner.aclose()
        finally:
            replicas = self._replicas
            if self._outcome == "ok":
                replicas.succeeded(self._replica)
            elif self._outcome is None:
                replicas.finished_neutral(self._replica)
            else:
                replicas.failed(self._replica, f"stream broke ({self._outcome})")
            done()


def request_tail(length: int, request_id: str) -> bytes:
    tail = b"content-length: %d\r\n" % length
    if safe_header(request_id):
        tail += b"x-request-id: " + request_id.encode() + b"\r\n"
    return tail + b"\r\n"


def safe_header(value: str) -> bool:
    return value.isascii() and value.isprintable() and len(value) <= 256


def raw_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"response body of {declared} bytes")
    parts, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"response body over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def transport_failure(exc: httpx.HTTPError, timeouts: Timeouts, limit: int) -> AttemptFailed:
    if isinstance(exc, BodyTooLarge):
        return AttemptFailed(errors.too_large(limit), "too_large", retryable=False)
    if isinstance(exc, httpx.PoolTimeout):
        error = errors.pool_timeout(timeouts.pool or 0)
        return AttemptFailed(error, "pool_timeout", retryable=False)
    if isinstance(exc, RETRYABLE_ERRORS):
        name = type(exc).__name__
        return AttemptFailed(errors.unavailable(name), name, retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        # A chat completion changes nothing upstream: asking another replica is safe.
        name = type(exc).__name__
        return AttemptFailed(errors.upstream_timeout(), name, retryable=True, elsewhere=True)
    return AttemptFailed(errors.dropped(), type(exc).__name__, retryable=False)


def attempt_timeout(seconds: float) -> AttemptFailed:
    """The attempt passed UPSTREAM_ATTEMPT_TIMEOUT: the replica counts as failed."""
    error = errors.attempt_timeout(seconds)
    return AttemptFailed(error, "attempt_timeout", retryable=True, elsewhere=True)


def completion(content: bytes) -> dict[str, Any]:
    """A 2xx body as a checked chat completion; `AttemptFailed` when it is garbage (the
    replica's fault: it counts toward ejection, and another replica is asked)."""
    try:
        return check_completion(orjson.loads(content))
    except orjson.JSONDecodeError:
        error = errors.bad_response("the model server returned a body that is not JSON")
    except APIError as exc:
        error = exc
    raise AttemptFailed(error, "bad_response", retryable=True, elsewhere=True)


def status_failure(status: int, content: bytes, retry_after_header: str | None) -> AttemptFailed:
    error = errors.upstream_error(status, content)
    if not 400 <= status <= 599:
        return AttemptFailed(error, "bad_status", retryable=False)
    retry_after = errors.retry_after_seconds(retry_after_header)
    retryable = status in RETRYABLE_STATUS and (
        retry_after is None or retry_after <= MAX_RETRY_AFTER
    )
    if status == 429:
        kind = "status_429"
    elif status < 500:
        kind = "status_4xx"
    else:
        kind = f"status_{status}"
    return AttemptFailed(error, kind, retryable, retry_after)
