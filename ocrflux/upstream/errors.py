"""What the client hears when the upstream fails: one function per kind of failure."""

from __future__ import annotations

import email.utils
import time

import orjson

from ocrflux.errors import APIError


def retry_after_seconds(value: str | None) -> float | None:
    """Parse `Retry-After` (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# Upstream statuses the client may see as they are; any other 5xx (vLLM's 500 above all)
# reaches the client as 502: a 500 would read as the gateway's own crash.
_RELAYED_5XX = frozenset({502, 503, 504})


def upstream_error(status: int, content: bytes) -> APIError:
    """vLLM's error body (either of its shapes) as our error, keeping message and param."""
    if not 400 <= status <= 599:
        return bad_response(f"the model server answered HTTP {status}")
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    detail = data.get("error", data) if isinstance(data, dict) else None
    if status >= 500 and status not in _RELAYED_5XX:
        message = detail.get("message") if isinstance(detail, dict) else None
        if not isinstance(message, str):
            message = content[:200].decode("utf-8", "replace").strip() or "no body"
        return APIError(
            502, f"the model server failed (HTTP {status}): {message}", code="upstream_error"
        )
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        param = detail.get("param")
        code = detail.get("code")
        kind = detail.get("type")
        return APIError(
            status,
            detail["message"],
            param=param if isinstance(param, str) else None,
            code=str(code) if isinstance(code, str | int) else None,
            type=kind if isinstance(kind, str) else None,
        )
    text = content[:200].decode("utf-8", "replace").strip() or "no body"
    return APIError(status, f"upstream returned HTTP {status}: {text}", code="upstream_error")


def upstream_timeout() -> APIError:
    return APIError(504, "the model server timed out", code="upstream_timeout")


def attempt_timeout(seconds: float) -> APIError:
    return APIError(
        504,
        f"the model server did not answer within {seconds:g} s (UPSTREAM_ATTEMPT_TIMEOUT)",
        code="upstream_timeout",
    )


def pool_timeout(seconds: float) -> APIError:
    """The gateway's own connection pool was full: the model server did nothing wrong."""
    return APIError(
        503,
        f"no free connection to the model server within {seconds:g} s: the gateway's "
        "connection pool is full (POOL_MAX_CONNECTIONS)",
        code="upstream_pool_timeout",
        headers={"Retry-After": "1"},
    )


def unavailable(reason: str, retry_after: int = 1) -> APIError:
    return APIError(
        503,
        f"the model server is unreachable ({reason})",
        code="upstream_unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def no_healthy_replica(detail: str, retry_after: int) -> APIError:
    return APIError(
        503,
        f"no model server is healthy right now ({detail})",
        code="upstream_unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def dropped() -> APIError:
    return APIError(502, "the model server dropped the connection", code="upstream_error")


def bad_response(message: str) -> APIError:
    return APIError(502, message, code="upstream_bad_response")


def too_large(limit: int) -> APIError:
    return bad_response(
        f"the model server's answer is over {limit:,} bytes (MAX_UPSTREAM_BODY_BYTES)"
    )


def queue_full(message: str, retry_after: int) -> APIError:
    return APIError(
        429,
        f"{message}; retry in {retry_after} s",
        code="rate_limit_exceeded",
        type="rate_limit_error",
        headers={"Retry-After": str(retry_after)},
    )


def queue_timeout(message: str, retry_after: int) -> APIError:
    return APIError(
        503,
        f"{message}; retry in {retry_after} s",
        code="queue_timeout",
        headers={"Retry-After": str(retry_after)},
    )
