"""The replicas: their health state machine and least-outstanding-requests balancing.

A replica is `healthy` (takes traffic), `ejected` (takes none) or `half_open` (takes one trial
call at a time). Passive ejection: `eject_after` consecutive failures (connection errors,
timeouts, attempts past UPSTREAM_ATTEMPT_TIMEOUT, 5xx, 2xx bodies that are not a chat
completion), unless it is the last healthy replica. An active check that fails ejects at
once. A successful check of an ejected replica makes it half-open; its next call decides:
success readmits it, failure ejects it again.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

logger = logging.getLogger("ocrflux.upstream")


class State(enum.StrEnum):
    HEALTHY = "healthy"
    EJECTED = "ejected"
    HALF_OPEN = "half_open"


@dataclass(eq=False)
class Replica:
    """One vLLM server, what is in flight to it, and what we last learned about it."""

    base_url: str
    label: str = ""
    state: State = State.HEALTHY
    in_flight: int = 0
    failures: int = 0  # consecutive
    last_error: str | None = None
    # What the last active check found (None: not checked yet).
    reachable: bool | None = None
    served_models: list[str] = field(default_factory=list)
    checked_at: float | None = None
    trial: bool = False  # a half-open trial call is in flight
    ejections: int = 0  # times taken out of rotation since start

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.scheme = parts.scheme
        # The Host header vLLM sees, as httpx would write it.
        self.authority = parts.netloc

    @property
    def healthy(self) -> bool:
        """Takes traffic (a half-open replica counts: it is being readmitted)."""
        return self.state is not State.EJECTED

    @property
    def error(self) -> str | None:  # the name /health and /ready have always used
        return self.last_error

    def takes_call(self) -> bool:
        return self.state is State.HEALTHY or (self.state is State.HALF_OPEN and not self.trial)


class ReplicaSet:
    """The replicas, the balancer that picks one per call, and the health transitions."""

    def __init__(
        self,
        urls: Sequence[str],
        eject_after: int = 3,
        choice: Callable[[Sequence[Replica]], Replica] = random.choice,
    ) -> None:
        self.replicas = [Replica(url, f"replica-{n}") for n, url in enumerate(urls)]
        self.eject_after = eject_after
        self._choice = choice

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def __len__(self) -> int:
        return len(self.replicas)

    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    # --- balancing ----------------------------------------------------------------------------
    def pick(self, tried: Iterable[Replica] = ()) -> Replica | None:
        """The replica with the fewest calls in flight (ties at random), avoiding `tried`.

        A replica already tried is picked again only when no other one takes calls; None when
        none takes calls at all (every replica ejected, or half-open with its trial running).
        """
        replicas = self.replicas
        if len(replicas) == 1:
            only = replicas[0]
            return only if only.takes_call() else None
        avoid = tried if isinstance(tried, set | frozenset) else set(tried)
        best = self._least_loaded([r for r in replicas if r.takes_call() and r not in avoid])
        if best is None and avoid:
            best = self._least_loaded([r for r in replicas if r.takes_call()])
        return best

    def _least_loaded(self, candidates: list[Replica]) -> Replica | None:
        if not candidates:
            return None
        fewest = min(r.in_flight for r in candidates)
        ties = [r for r in candidates if r.in_flight == fewest]
        return ties[0] if len(ties) == 1 else self._choice(ties)

    def started(self, replica: Replica) -> None:
        replica.in_flight += 1
        if replica.state is State.HALF_OPEN:
            replica.trial = True

    # --- passive health -----------------------------------------------------------------------
    def succeeded(self, replica: Replica) -> None:
        replica.in_flight -= 1
        replica.failures = 0
        if replica.state is State.HALF_OPEN:
            replica.trial = False
            replica.state = State.HEALTHY
            replica.last_error = None
            logger.info("replica %s readmitted after a successful trial call", replica.base_url)

    def failed(self, replica: Replica, reason: str) -> None:
        replica.in_flight -= 1
        replica.failures += 1
        replica.last_error = reason
        if replica.state is State.HALF_OPEN:
            replica.trial = False
            self._eject(replica, f"its trial call failed ({reason})")
        elif (
            replica.state is State.HEALTHY
            and replica.failures >= self.eject_after
            and self._others_healthy(replica)
        ):
            self._eject(replica, f"{replica.failures} consecutive failures, the last: {reason}")

    def _others_healthy(self, replica: Replica) -> bool:
        """Passive ejection never takes out the last healthy replica: with nowhere else to
        send a call, failing every call fast (one poison request's 500s would do it) is worse
        than trying. Only an active check that fails can mark the last one down."""
        return any(r.state is State.HEALTHY for r in self.replicas if r is not replica)

    def finished_neutral(self, replica: Replica) -> None:
        """A call that says nothing about the replica's health (e.g. cancelled by our client)."""
        replica.in_flight -= 1
        if replica.state is State.HALF_OPEN:
            replica.trial = False

    # --- active health ------------------------------------------------------------------------
    def checked(
        self,
        replica: Replica,
        *,
        ready: bool,
        reachable: bool,
        error: str | None = None,
        served_models: list[str] | None = None,
    ) -> None:
        """Apply an active check's outcome: a failed check ejects, a good one starts readmission."""
        replica.reachable = reachable
        replica.served_models = served_models or []
        replica.checked_at = time.time()
        if not ready:
            replica.last_error = error
            if replica.state is not State.EJECTED:
                self._eject(replica, f"its check failed ({error})")
            return
        if replica.state is State.EJECTED:
            replica.state = State.HALF_OPEN
            replica.trial = False
            logger.info("replica %s passed its check: half-open", replica.base_url)
        if replica.state is State.HEALTHY:
            replica.last_error = None

    def _eject(self, replica: Replica, why: str) -> None:
        replica.ejections += 1
        replica.state = State.EJECTED
        replica.trial = False
        logger.warning("replica %s ejected: %s", replica.base_url, why)
