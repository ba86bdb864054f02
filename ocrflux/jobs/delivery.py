"""Sending the outbox's webhook events: one loop per gateway, retries with backoff.

Each event is claimed from the database with a lease, signed at the moment it is sent, and
POSTed to WEBHOOK_URL. A 2xx marks it delivered (never sent again, restarts included). A
timeout, a connection error, a 408, a 429 or a 5xx puts it back for another attempt after
WEBHOOK_RETRY_SECONDS, doubled each time (at most an hour), until WEBHOOK_MAX_ATTEMPTS; any
other answer (a 4xx, a redirect: none is followed) marks it failed at once. An event whose
gateway died mid-send is sent by whichever gateway claims it after the lease.

The receiver's address goes through the SSRF guard of remote downloads
(`ocrflux.intake.fetch`): its host is resolved at each attempt, every address must be public,
and the POST goes to the address that was checked (Host header and TLS SNI carry the name), so
a DNS answer that changes in between cannot point it inward. WEBHOOK_ALLOWED_HOSTS lifts the
guard for the host names, addresses and networks it lists (internal receivers are common). A
refused address fails the event without a connection; a name that does not resolve is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from ocrflux.intake.fetch import IPNetwork, Resolver, resolve_checked, system_resolver
from ocrflux.intake.image_input import ImageRejected
from ocrflux.jobs.records import Delivery
from ocrflux.jobs.store import Outbox
from ocrflux.jobs.webhooks import WebhookSigner
from ocrflux.metrics import record_webhook_delivery
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux.jobs")

MAX_BACKOFF = 3600.0
# Events sent at once by one gateway.
SENDING = 8
_RETRIED_STATUSES = frozenset({408, 429})


class Unresolved(Exception):
    """The receiver's host name has no address now (DNS may answer later)."""


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: `retry` may succeed later, `failed` never will."""

    outcome: Literal["delivered", "retry", "failed"]
    detail: str


def judge(status_code: int) -> Attempt:
    """What the receiver's answer means for the event."""
    detail = f"HTTP {status_code}"
    if 200 <= status_code <= 299:
        return Attempt("delivered", detail)
    if status_code >= 500 or status_code in _RETRIED_STATUSES:
        return Attempt("retry", detail)
    if 300 <= status_code <= 399:
        return Attempt("failed", f"{detail} (redirects are not followed)")
    return Attempt("failed", detail)


class WebhookSender:
    """POSTs signed events to WEBHOOK_URL past the SSRF guard, one attempt at a time, capped
    in time."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = httpx.URL(settings.webhook_url)
        self._signer = WebhookSigner(settings.webhook_secret)
        self._timeout = settings.webhook_timeout
        self._resolve = resolver or system_resolver
        self._allowed_names: set[str] = set()
        self._allowed_networks: list[IPNetwork] = []
        for entry in settings.webhook_allowed_hosts:
            try:
                self._allowed_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._allowed_names.add(entry)
        limits = httpx.Limits(max_connections=SENDING, max_keepalive_connections=0)
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(limits=limits, trust_env=False),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self._timeout),
            limits=limits,
            headers={"User-Agent": "ocrflux-gateway", "Content-Type": "application/json"},
        )

    async def send(self, delivery: Delivery) -> Attempt:
        headers = self._signer.headers(delivery.id, delivery.payload, int(time.time()))
        try:
            async with asyncio.timeout(self._timeout):
                request = await self._request(delivery.payload, headers)
                response = await self._client.send(request, stream=True)
                await response.aclose()  # the receiver's body is not read: its status says it
        except ImageRejected as exc:  # the guard: asking again would be refused again
            return Attempt("failed", f"{exc.message} (WEBHOOK_ALLOWED_HOSTS may name it)")
        except Unresolved as exc:
            return Attempt("retry", str(exc))
        except TimeoutError:
            return Attempt("retry", f"timed out after {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt("retry", f"could not reach the receiver ({type(exc).__name__})")
        return judge(response.status_code)

    async def _request(self, body: bytes, headers: dict[str, str]) -> httpx.Request:
        """The POST, to the checked address of the receiver unless its name is allowed."""
        url, host = self.url, self.url.host
        if host in self._allowed_names:
            return self._client.build_request("POST", url, content=body, headers=headers)
        address = await resolve_checked(host, self._resolve, self._allowed_networks, Unresolved)
        return self._client.build_request(
            "POST",
            url.copy_with(host=str(address)),
            content=body,
            headers={**headers, "Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": host} if url.scheme == "https" else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class WebhookDelivery:
    """The gateway's sending loop; `start()` in the lifespan, `aclose()` at its end."""

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        sender: WebhookSender,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.clock = clock
        self.poll = settings.batch_poll_interval
        self.max_attempts = settings.webhook_max_attempts
        self.first_retry = settings.webhook_retry_seconds
        # An attempt ends within its timeout: a lease twice as long is only lost by a death.
        self.lease = 2 * settings.webhook_timeout + 10
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-delivery")

    def wake(self) -> None:
        self._wake.set()

    async def aclose(self) -> None:
        """Stop; an attempt cut short is given back, to be sent again (at least once)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.sender.aclose()

    def backoff(self, attempts: int) -> float:
        """Seconds before the attempt after attempt number `attempts`."""
        return float(min(self.first_retry * 2 ** (attempts - 1), MAX_BACKOFF))

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.poll
            try:
                due = await self.outbox.claim_due(SENDING, self.lease)
                if due:
                    await asyncio.gather(*(self.deliver(d) for d in due))
                    continue
                next_at = await self.outbox.next_due()
                if next_at is not None:
                    wait = min(wait, max(0.0, next_at - self.clock()))
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again
                logger.exception("webhook delivery failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def deliver(self, delivery: Delivery) -> None:
        """One attempt at `delivery`, and its outcome recorded."""
        try:
            attempt = await self.sender.send(delivery)
        except asyncio.CancelledError:  # stopping: whoever runs next sends it at once
            with contextlib.suppress(Exception):
                await asyncio.shield(self.outbox.release(delivery))
            raise
        where = f"webhook {delivery.type} of {delivery.batch_id} ({delivery.id})"
        if attempt.outcome == "delivered":
            if await self.outbox.delivered(delivery):
                record_webhook_delivery("delivered")
                logger.info("%s delivered", where)
            return
        if attempt.outcome == "retry" and delivery.attempts < self.max_attempts:
            delay = self.backoff(delivery.attempts)
            if await self.outbox.retry(delivery, self.clock() + delay, attempt.detail):
                record_webhook_delivery("retried")
                logger.warning(
                    "%s: attempt %d: %s; next in %g s",
                    where, delivery.attempts, attempt.detail, delay,
                )  # fmt: skip
            return
        if attempt.outcome == "retry":
            detail = f"{attempt.detail} (after {delivery.attempts} attempts)"
        else:
            detail = attempt.detail
        if await self.outbox.failed(delivery, detail):
            record_webhook_delivery("failed")
            logger.error("%s failed: %s", where, detail)
