"""`Upstream`: chat completions to the vLLM replicas, admitted, balanced, retried, counted.

One call: wait for an admission slot (fair share between flows), pick the least-loaded healthy
replica, send; on a retryable failure try a different healthy replica (with backoff when none is
left). Non-streaming calls on the lean transport go out as raw bytes (no httpx objects: the hot
path); streams and the `httpx` transport go through the pooled `httpx.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from ocrflux import metrics
from ocrflux.errors import APIError
from ocrflux.observability import current_request
from ocrflux.settings import Settings
from ocrflux.upstream import errors
from ocrflux.upstream.admission import Admission, QueueFull, Rejected
from ocrflux.upstream.attempt import (
    NEUTRAL_KINDS,
    AttemptFailed,
    TrackedStream,
    attempt_timeout,
    completion,
    raw_header,
    read_capped,
    request_tail,
    safe_header,
    status_failure,
    transport_failure,
)
from ocrflux.upstream.health import HealthChecker
from ocrflux.upstream.replicas import Replica, ReplicaSet
from ocrflux.upstream.transport import LeanTransport, Timeouts
from ocrflux.work_class import is_background

logger = logging.getLogger("ocrflux.upstream")

CHAT_PATH = "/v1/chat/completions"
_T = TypeVar("_T")


class Upstream:
    """Sends chat completions to vLLM replicas through one pooled `httpx.AsyncClient`."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        health_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = ReplicaSet(settings.upstream_urls, settings.eject_after_failures)
        self.admission = Admission(
            settings.max_concurrent_requests, settings.max_queue, settings.queue_timeout
        )
        self._sleep = sleep
        headers = {"content-type": "application/json"}
        if settings.vllm_api_key:
            headers["authorization"] = f"Bearer {settings.vllm_api_key}"
        self.timeouts = Timeouts(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(**self.timeouts._asdict()),
            limits=httpx.Limits(
                max_connections=settings.pool_max_connections,
                max_keepalive_connections=settings.pool_max_keepalive,
            ),
        )
        self.lean = transport if isinstance(transport, LeanTransport) else None
        # The fixed part of every non-streaming request head, per replica (the hot path).
        self._heads = {
            r.base_url: (
                f"POST {CHAT_PATH} HTTP/1.1\r\nhost: {r.authority}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + "accept: application/json\r\n"
            ).encode("latin-1")
            for r in self.replicas
        }
        self.health = HealthChecker(
            self.replicas,
            settings.ocrflux_model,
            settings.health_check_interval,
            headers={"authorization": headers["authorization"]} if settings.vllm_api_key else None,
            transport=health_transport,
            cache_seconds=settings.ready_cache_seconds,
        )

    async def aclose(self) -> None:
        await self.health.aclose()
        await self.client.aclose()

    # --- the metrics scrape's view (ocrflux.metrics.UpstreamView) -----------------------------
    def replica_views(self) -> list[Replica]:
        return self.replicas.replicas

    def admission_state(self) -> tuple[int, int, int]:
        a = self.admission
        return a.in_use, a.limit, a.queued

    def background_state(self) -> tuple[int, int]:
        return self.admission.background_in_use, self.admission.background_queued

    # --- calls --------------------------------------------------------------------------------
    async def chat(
        self, body: bytes, request_id: str, *, flow: str | None = None
    ) -> dict[str, Any]:
        """A non-streaming chat completion, parsed and checked for OpenAI's shape.

        `flow` is the fairness key (one client request or one document; default: the request).
        A body that is not a chat completion is the replica's failure: another one is asked.
        """
        flow = flow or request_id
        background = await self._admit(flow)
        started = time.monotonic()

        async def attempt_on(replica: Replica) -> dict[str, Any]:
            return completion(await self._attempt(replica, body, request_id))

        try:
            data, _ = await self._call(attempt_on, stream=False)
        finally:
            self.admission.release(flow, time.monotonic() - started, background=background)
        return data

    async def send(
        self, body: bytes, request_id: str, *, flow: str | None = None
    ) -> httpx.Response:
        """POST a streaming chat completion; the open 2xx response, or `APIError`.

        Closing the response frees its slot. Once returned, its body may be streamed to the
        client, so it is never retried.
        """
        flow = flow or request_id
        background = await self._admit(flow)
        started = time.monotonic()
        handed_over = False

        def release() -> None:
            self.admission.release(flow, time.monotonic() - started, background=background)

        try:
            response, replica = await self._call(
                lambda replica: self._attempt_stream(replica, body, request_id), stream=True
            )
            response.stream = TrackedStream(response.stream, self.replicas, replica, release)
            handed_over = True
            return response
        finally:
            if not handed_over:
                release()

    async def _admit(self, flow: str) -> bool:
        """Wait for a slot of the caller's class (`ocrflux.work_class`); True: background."""
        background = is_background()
        try:
            waited = await self.admission.acquire(flow, background=background)
        except Rejected as exc:
            full = isinstance(exc, QueueFull)
            metrics.record_rejected("queue_full" if full else "queue_timeout")
            make = errors.queue_full if full else errors.queue_timeout
            raise make(str(exc), exc.retry_after) from None
        if waited:
            metrics.record_queue_wait(waited, background=background)
        return background

    async def _call(
        self, attempt_on: Callable[[Replica], Awaitable[_T]], *, stream: bool
    ) -> tuple[_T, Replica]:
        """Attempts on replicas until one succeeds; its result and replica, or `APIError`.

        Each attempt has UPSTREAM_ATTEMPT_TIMEOUT (a stream: until its head arrives); past it
        the replica counts as failed and another one, not tried yet, is asked.
        """
        attempts = self.settings.max_retries + 1
        deadline = self.settings.upstream_attempt_timeout
        tried: list[Replica] = []
        last: AttemptFailed | None = None
        log = current_request()
        for attempt in range(attempts):
            replica = self.replicas.pick(tried)
            if replica is not None and last is not None and replica in tried:
                # Nowhere new to go: give the replica (or the one it said) time first.
                await self._sleep(self._backoff(attempt - 1, last.retry_after))
                replica = self.replicas.pick(tried)
            if replica is None:
                raise self._nothing_healthy()
            tried.append(replica)
            if log is not None:
                log.used(replica.authority, attempt > 0)
            metrics.record_upstream_attempt(replica.base_url, attempt > 0)
            self.replicas.started(replica)
            began = time.perf_counter()
            try:
                try:
                    async with asyncio.timeout(deadline):
                        result = await attempt_on(replica)
                except TimeoutError:
                    raise attempt_timeout(deadline) from None
            except AttemptFailed as failed:
                self._account(replica, failed.kind, began)
                stuck = failed.elsewhere and self._all_tried(tried)
                if not failed.retryable or attempt == attempts - 1 or stuck:
                    raise failed.error from failed.__cause__
                logger.warning(
                    "upstream %s failed (%s), attempt %d/%d",
                    replica.base_url,
                    failed.kind,
                    attempt + 1,
                    attempts,
                )
                last = failed
                continue
            except BaseException:
                self.replicas.finished_neutral(replica)  # cancelled: says nothing of the replica
                raise
            if not stream:  # a stream's outcome is known when it ends (`TrackedStream`)
                self.replicas.succeeded(replica)
            metrics.record_upstream_result(replica.base_url, time.perf_counter() - began)
            return result, replica
        raise AssertionError("unreachable")  # pragma: no cover

    def _all_tried(self, tried: list[Replica]) -> bool:
        """No replica that takes calls is left untried."""
        return not any(r.takes_call() and r not in tried for r in self.replicas)

    def _account(self, replica: Replica, kind: str, began: float) -> None:
        metrics.record_upstream_result(replica.base_url, time.perf_counter() - began, kind)
        if kind in NEUTRAL_KINDS:
            self.replicas.finished_neutral(replica)  # the replica is fine
            if kind == "status_4xx":
                replica.failures = 0
        else:
            self.replicas.failed(replica, kind)

    def _nothing_healthy(self) -> APIError:
        reasons = "; ".join(
            f"{r.authority}: {r.last_error or r.state.value}" for r in self.replicas
        )
        wait = self.settings.health_check_interval or 2.0
        return errors.no_healthy_replica(reasons, max(1, round(min(wait, 2.0))))

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.settings.retry_backoff_max, self.settings.retry_backoff * 2**attempt)
        delay = ceiling * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    async def _attempt(self, replica: Replica, body: bytes, request_id: str) -> bytes:
        """One non-streaming attempt: the 2xx body, or `AttemptFailed`."""
        limit = self.settings.max_upstream_body_bytes
        try:
            if self.lean is not None and replica.scheme == "http":
                head = self._heads[replica.base_url] + request_tail(len(body), request_id)
                status, raw_headers, content = await self.lean.roundtrip(
                    replica.host, replica.port, head, body, self.timeouts, limit
                )
                if 200 <= status <= 299:
                    return content
                retry_after = raw_header(raw_headers, b"retry-after")
            else:
                response = await self.client.send(
                    self._request(replica, body, request_id), stream=True
                )
                try:
                    content = await read_capped(response, limit)
                finally:
                    await response.aclose()
                status = response.status_code
                if 200 <= status <= 299:
                    return content
                retry_after = response.headers.get("retry-after")
        except httpx.HTTPError as exc:
            raise transport_failure(exc, self.timeouts, limit) from exc
        raise status_failure(status, content, retry_after)

    async def _attempt_stream(
        self, replica: Replica, body: bytes, request_id: str
    ) -> httpx.Response:
        """One streaming attempt: the open 2xx response, or `AttemptFailed`."""
        limit = self.settings.max_upstream_body_bytes
        try:
            response = await self.client.send(self._request(replica, body, request_id), stream=True)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, self.timeouts, limit) from exc
        status = response.status_code
        if 200 <= status <= 299:
            return response
        try:
            content = await read_capped(response, limit)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, self.timeouts, limit) from exc
        finally:
            await response.aclose()
        raise status_failure(status, content, response.headers.get("retry-after"))

    def _request(self, replica: Replica, body: bytes, request_id: str) -> httpx.Request:
        headers = {"x-request-id": request_id} if safe_header(request_id) else None
        return self.client.build_request(
            "POST", f"{replica.base_url}{CHAT_PATH}", content=body, headers=headers
        )

    # --- health -------------------------------------------------------------------------------
    async def check(self) -> list[Replica]:
        """Check every replica now (concurrent callers share one check)."""
        await self.health.check_all()
        return self.replicas.replicas

    def model_mismatch(self, replica: Replica) -> str | None:
        """A one-line explanation when the replica does not serve OCRFLUX_MODEL."""
        if not replica.reachable:
            return None
        return self.health.mismatch(replica.base_url, replica.served_models)
