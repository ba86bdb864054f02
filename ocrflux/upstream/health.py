"""Active health checks: each replica's `/health` and `/v1/models`, on a timer and on demand.

Checks use their own small connection pool, so a saturated request pool can never make a
healthy replica look dead. Every answer is parsed defensively: whatever a replica says, the
outcome is a state and a one-line reason, never an exception (the poller must not die).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import orjson

from ocrflux.upstream.replicas import Replica, ReplicaSet, State

logger = logging.getLogger("ocrflux.upstream")

CHECK_TIMEOUT = 3.0
# An ejected replica is probed this often (or every interval, if shorter), so one that comes
# back is readmitted quickly even when periodic checks are off.
EJECTED_PROBE_INTERVAL = 2.0


def served_model_ids(content: bytes) -> list[str] | None:
    """Model ids from a `/v1/models` body; None when the body is not that shape."""
    try:
        data: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    models = data.get("data") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return None
    return [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]


class HealthChecker:
    """Checks replicas and applies the outcome to their state."""

    def __init__(
        self,
        replicas: ReplicaSet,
        model: str,
        interval: float,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        cache_seconds: float = 1.0,
    ) -> None:
        self.replicas = replicas
        self.model = model
        self.interval = interval
        self.cache_seconds = cache_seconds
        self.client = httpx.AsyncClient(
            transport=transport,
            headers=headers,
            timeout=CHECK_TIMEOUT,
            limits=httpx.Limits(max_connections=2 * len(replicas) + 2, max_keepalive_connections=0),
        )
        self._running: asyncio.Task[None] | None = None
        self._last_full = 0.0
        self._poller: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.client.aclose()

    # --- checking -----------------------------------------------------------------------------
    async def check_all(self) -> None:
        """Check every replica now; concurrent callers share one round of checks."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check(list(self.replicas)))
        # Shielded: one caller going away must not cancel the others' check.
        await asyncio.shield(self._running)

    async def fresh(self) -> None:
        """Check unless a round finished within `cache_seconds` (what /ready calls)."""
        if time.monotonic() - self._last_full >= self.cache_seconds:
            await self.check_all()

    async def _check(self, replicas: list[Replica]) -> None:
        await asyncio.gather(*(self.check_one(r) for r in replicas))
        if len(replicas) == len(self.replicas):
            self._last_full = time.monotonic()

    async def check_one(self, replica: Replica) -> None:
        try:
            ready, reachable, error, models = await self._ask(replica)
        except Exception as exc:  # a check must never take the poller down
            logger.exception("checking %s failed unexpectedly", replica.base_url)
            ready, reachable, error, models = False, False, f"check failed: {exc!r}", []
        self.replicas.checked(
            replica, ready=ready, reachable=reachable, error=error, served_models=models
        )

    async def _ask(self, replica: Replica) -> tuple[bool, bool, str | None, list[str]]:
        """(ready, reachable, why not ready, served model ids)."""
        try:
            health = await self.client.get(f"{replica.base_url}/health")
        except httpx.HTTPError as exc:
            return False, False, f"/health: {type(exc).__name__}", []
        if health.status_code != 200:
            return False, True, f"/health answered {health.status_code}", []
        try:
            listing = await self.client.get(f"{replica.base_url}/v1/models")
        except httpx.HTTPError as exc:
            return False, True, f"/v1/models: {type(exc).__name__}", []
        if listing.status_code != 200:
            return False, True, f"/v1/models answered {listing.status_code}", []
        models = served_model_ids(listing.content)
        if models is None:
            return False, True, "/v1/models answered a body without a model list", []
        mismatch = self.mismatch(replica.base_url, models)
        return mismatch is None, True, mismatch, models

    def mismatch(self, base_url: str, served: list[str]) -> str | None:
        """A one-line explanation when a replica does not serve OCRFLUX_MODEL."""
        if not served or self.model in served:
            return None
        return (
            f"OCRFLUX_MODEL={self.model!r} but vLLM at {base_url} serves {served}; set "
            f"OCRFLUX_MODEL to that name or start vLLM with --served-model-name {self.model}"
        )

    # --- the poller ---------------------------------------------------------------------------
    def start(self) -> None:
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        """Full checks every `interval` (if > 0); ejected replicas probed more often."""
        tick = min(self.interval or EJECTED_PROBE_INTERVAL, EJECTED_PROBE_INTERVAL)
        while True:
            await asyncio.sleep(tick)
            try:
                due = self.interval and time.monotonic() - self._last_full >= self.interval * 0.99
                if due:
                    await self.check_all()
                else:
                    ejected = [r for r in self.replicas if r.state is State.EJECTED]
                    if ejected:
                        await self._check(ejected)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the poller die silently
                logger.exception("health poller round failed; it keeps running")


def describe(replica: Replica, mismatch: str | None, hide_url: bool) -> dict[str, Any]:
    """A replica's state for /ready (`hide_url`: its label instead of its URL, everywhere)."""

    def shown(text: str | None) -> str | None:
        if text is None or not hide_url:
            return text
        return text.replace(replica.base_url, replica.label).replace(
            replica.authority, replica.label
        )

    return {
        "url": replica.label if hide_url else replica.base_url,
        "healthy": replica.healthy,
        "state": replica.state.value,
        "in_flight": replica.in_flight,
        "ejections": replica.ejections,
        "last_error": shown(replica.last_error),
        "error": shown(replica.last_error),
        "reachable": replica.reachable,
        "served_models": replica.served_models,
        "model_mismatch": shown(mismatch),
        "checked_at": replica.checked_at,
    }
