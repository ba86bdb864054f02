"""The pooled client to vLLM: replicas, retries with backoff, error mapping, health."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from ocrflux.errors import APIError
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux.upstream")

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# Failures before the upstream produced a response: the request had no effect, so a retry is safe.
RETRYABLE_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
)
# A Retry-After longer than this is not worth waiting for inside one client request.
MAX_RETRY_AFTER = 30.0
HEALTH_TIMEOUT = 3.0


@dataclass
class Replica:
    """One vLLM server and what we last learned about it."""

    base_url: str
    reachable: bool | None = None
    served_models: list[str] = field(default_factory=list)
    checked_at: float | None = None
    error: str | None = None


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
        return APIError(
            status,
            detail["message"],
            param=param if isinstance(param, str) else None,
            code=str(code) if code is not None else None,
            type=detail.get("type") if isinstance(detail.get("type"), str) else None,
        )
    text = content[:200].decode("utf-8", "replace").strip() or "no body"
    return APIError(status, f"upstream returned HTTP {status}: {text}", code="upstream_error")


def upstream_timeout() -> APIError:
    return APIError(504, "the model server timed out", code="upstream_timeout")


class Upstream:
    """Sends chat completions to vLLM replicas through one pooled `httpx.AsyncClient`."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.replicas = [Replica(url) for url in settings.upstream_urls]
        self._next = itertools.cycle(self.replicas)
        self._sleep = sleep
        headers = {"content-type": "application/json"}
        if settings.vllm_api_key:
            headers["authorization"] = f"Bearer {settings.vllm_api_key}"
        self.client = httpx.AsyncClient(
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=settings.pool_max_connections,
                max_keepalive_connections=settings.pool_max_keepalive,
            ),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.settings.retry_backoff_max, self.settings.retry_backoff * 2**attempt)
        delay = ceiling * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    async def send(self, body: bytes, request_id: str) -> httpx.Response:
        """POST a chat completion; return the open (streaming) 2xx response or raise `APIError`.

        Retries connection failures and 429/502/503/504 up to `max_retries` times; once a
        response is returned its body may be streamed to the client, so it is never retried.
        """
        headers = {"x-request-id": request_id}
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            replica = next(self._next)
            last = attempt == attempts - 1
            request = self.client.build_request(
                "POST", f"{replica.base_url}/v1/chat/completions", content=body, headers=headers
            )
            try:
                response = await self.client.send(request, stream=True)
            except RETRYABLE_ERRORS as exc:
                replica.reachable, replica.error = False, type(exc).__name__
                logger.warning(
                    "upstream %s failed (%s), attempt %d/%d",
                    replica.base_url,
                    type(exc).__name__,
                    attempt + 1,
                    attempts,
                )
                if last:
                    raise APIError(
                        503,
                        f"the model server is unreachable ({type(exc).__name__})",
                        code="upstream_unavailable",
                    ) from exc
                await self._sleep(self._backoff(attempt, None))
                continue
            except httpx.TimeoutException as exc:
                raise upstream_timeout() from exc

            if response.status_code < 400:
                return response
            content = await response.aread()
            await response.aclose()
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            retryable = response.status_code in RETRYABLE_STATUS and (
                retry_after is None or retry_after <= MAX_RETRY_AFTER
            )
            if retryable and not last:
                logger.warning(
                    "upstream %s answered %d, attempt %d/%d",
                    replica.base_url,
                    response.status_code,
                    attempt + 1,
                    attempts,
                )
                await self._sleep(self._backoff(attempt, retry_after))
                continue
            raise upstream_error(response.status_code, content)
        raise AssertionError("unreachable")  # pragma: no cover

    async def chat(self, body: bytes, request_id: str) -> dict[str, Any]:
        """A non-streaming chat completion, parsed."""
        response = await self.send(body, request_id)
        try:
            content = await response.aread()
        except httpx.TimeoutException as exc:
            raise upstream_timeout() from exc
        except httpx.TransportError as exc:
            raise APIError(
                502, "the model server dropped the connection", code="upstream_error"
            ) from exc
        finally:
            await response.aclose()
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise APIError(
                502,
                "the model server returned a body that is not JSON",
                code="upstream_bad_response",
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise APIError(
                502, "the model server returned an unexpected body", code="upstream_bad_response"
            )
        return data

    async def check(self) -> list[Replica]:
        """Refresh every replica's reachability and served model names."""
        await asyncio.gather(*(self._check_one(r) for r in self.replicas))
        return self.replicas

    async def _check_one(self, replica: Replica) -> None:
        try:
            health = await self.client.get(f"{replica.base_url}/health", timeout=HEALTH_TIMEOUT)
            models = await self.client.get(f"{replica.base_url}/v1/models", timeout=HEALTH_TIMEOUT)
            replica.reachable = health.status_code == 200
            replica.error = None if replica.reachable else f"/health answered {health.status_code}"
            ids = [m.get("id") for m in orjson.loads(models.content).get("data", [])]
            replica.served_models = [i for i in ids if isinstance(i, str)]
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError) as exc:
            replica.reachable, replica.error = False, type(exc).__name__
        replica.checked_at = time.time()

    def model_mismatch(self, replica: Replica) -> str | None:
        """A one-line explanation when the replica does not serve OCRFLUX_MODEL."""
        wanted = self.settings.ocrflux_model
        if not replica.reachable or not replica.served_models or wanted in replica.served_models:
            return None
        return (
            f"OCRFLUX_MODEL={wanted!r} but vLLM at {replica.base_url} serves "
            f"{replica.served_models}; set OCRFLUX_MODEL to that name or start vLLM with "
            f"--served-model-name {wanted}"
        )
