"""Prometheus metrics (prometheus-client), and small functions other layers call to count.

Other layers never touch prometheus: they call `record_pages(...)`, `record_images(...)`,
`record_documents(...)`. Live values (replica health, calls in flight, queue depth) are read
from the upstream layer when /metrics is scraped, so they cost nothing per request. Labelled
children are cached: a `labels()` lookup costs ~4 us, a dict hit ~0.1 us.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# `*_created` timestamps double the exposition and no dashboard reads them.
disable_created_metrics()

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ReplicaView(Protocol):
    label: str
    base_url: str
    in_flight: int
    ejections: int

    @property
    def healthy(self) -> bool: ...


class UpstreamView(Protocol):
    """What the scrape reads from the upstream layer (kept structural: no import upward)."""

    def replica_views(self) -> Iterable[ReplicaView]: ...

    def admission_state(self) -> tuple[int, int, int]: ...  # in use, limit, queued

    def background_state(self) -> tuple[int, int]: ...  # background in flight, waiting


class _Live(Collector):
    """Gauges computed at scrape time from the upstream layer's own state, and the batch
    census the batch worker takes every few seconds."""

    def __init__(self) -> None:
        self.upstream: UpstreamView | None = None
        self.batches: dict[str, int] | None = None
        self.batch_lines_waiting = 0

    def collect(self) -> Iterable[Metric]:
        healthy = GaugeMetricFamily(
            "ocrflux_replica_healthy", "1 when the replica takes calls.", labels=["replica"]
        )
        in_flight = GaugeMetricFamily(
            "ocrflux_replica_in_flight", "Calls in flight to the replica.", labels=["replica"]
        )
        ejections = CounterMetricFamily(
            "ocrflux_replica_ejections",
            "Times the replica was taken out of rotation (passive or active health).",
            labels=["replica"],
        )
        slots = GaugeMetricFamily(
            "ocrflux_upstream_in_flight", "Upstream calls holding a slot, all replicas."
        )
        limit = GaugeMetricFamily(
            "ocrflux_upstream_slots", "MAX_CONCURRENT_REQUESTS: the slots there are."
        )
        queued = GaugeMetricFamily(
            "ocrflux_queue_depth", "Interactive upstream calls waiting for a slot."
        )
        background = GaugeMetricFamily(
            "ocrflux_background_in_flight", "Background (batch) upstream calls holding a slot."
        )
        background_queued = GaugeMetricFamily(
            "ocrflux_background_queue_depth",
            "Background (batch) upstream calls waiting for capacity interactive work leaves.",
        )
        if self.upstream is not None:
            for replica in self.upstream.replica_views():
                healthy.add_metric([replica.base_url], 1.0 if replica.healthy else 0.0)
                in_flight.add_metric([replica.base_url], float(replica.in_flight))
                ejections.add_metric([replica.base_url], float(replica.ejections))
            used, total, waiting = self.upstream.admission_state()
            slots.add_metric([], float(used))
            limit.add_metric([], float(total))
            queued.add_metric([], float(waiting))
            running, behind = self.upstream.background_state()
            background.add_metric([], float(running))
            background_queued.add_metric([], float(behind))
        families = [
            healthy,
            in_flight,
            ejections,
            slots,
            limit,
            queued,
            background,
            background_queued,
        ]
        if self.batches is not None:
            by_status = GaugeMetricFamily(
                "ocrflux_batches", "Batches in the jobs database, by status.", labels=["status"]
            )
            for status, count in sorted(self.batches.items()):
                by_status.add_metric([status], float(count))
            backlog = GaugeMetricFamily(
                "ocrflux_batch_lines_waiting", "Lines of running batches not started yet."
            )
            backlog.add_metric([], float(self.batch_lines_waiting))
            families += [by_status, backlog]
        return families


class _Cached:
    """A labelled metric whose children are looked up once per label tuple."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child


class Metrics:
    """Every series of the gateway, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.live = _Live()
        self.registry.register(self.live)
        counter, histogram = self._counter, self._histogram
        self.requests = counter("requests", "HTTP requests by route and status.", "route", "status")
        self.request_seconds = histogram(
            "request_duration_seconds", "Whole request latency.", _LATENCY_BUCKETS, "route"
        )
        self.request_bytes = counter("request_bytes", "Request body bytes received.", "route")
        self.response_bytes = counter("response_bytes", "Response body bytes sent.", "route")
        self.upstream_seconds = histogram(
            "upstream_duration_seconds",
            "One upstream attempt, until its whole answer (streams: its head).",
            _LATENCY_BUCKETS,
            "replica",
        )
        self.queue_seconds = Histogram(
            "ocrflux_queue_wait_seconds",
            "Time an upstream call waited for a slot.",
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.attempts = counter("upstream_attempts", "Upstream attempts, retries too.", "replica")
        self.retries = counter("upstream_retries", "Attempts that were retries.", "replica")
        self.errors = counter(
            "upstream_errors", "Failed upstream attempts by kind.", "replica", "kind"
        )
        self.rejected = counter("admission_rejected", "Calls refused for want of a slot.", "reason")
        self.images = Counter(
            "ocrflux_images", "Images prepared from client requests.", registry=self.registry
        )
        self.pages = counter("pages", "Pages read, by engine.", "engine")
        self.fallback_pages = counter(
            "fallback_pages", "Pages answered with raw text (not page JSON).", "engine"
        )
        self.documents = counter("documents", "Documents processed, by outcome.", "outcome")
        self.batch_lines = counter(
            "batch_lines", "Batch lines committed, by outcome (succeeded, failed).", "outcome"
        )
        self.webhook_deliveries = counter(
            "webhook_deliveries",
            "Webhook attempts by outcome (delivered, retried, failed).",
            "outcome",
        )
        self.batch_line_seconds = Histogram(
            "ocrflux_batch_line_duration_seconds",
            "One batch line, from its claim to its commit.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _counter(self, name: str, doc: str, *labels: str) -> _Cached:
        return _Cached(Counter(f"ocrflux_{name}", doc, labels, registry=self.registry))

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> _Cached:
        metric = Histogram(f"ocrflux_{name}", doc, labels, buckets=buckets, registry=self.registry)
        return _Cached(metric)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()


def watch_upstream(upstream: UpstreamView | None) -> None:
    """Scrape live gauges from this upstream layer (None: stop)."""
    METRICS.live.upstream = upstream


def record_request(route: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
    METRICS.requests(route, str(status)).inc()
    METRICS.request_seconds(route).observe(seconds)
    if bytes_in:
        METRICS.request_bytes(route).inc(bytes_in)
    if bytes_out:
        METRICS.response_bytes(route).inc(bytes_out)


def record_images(n: int) -> None:
    """`n` images prepared (decoded or checked) for the model."""
    if n:
        METRICS.images.inc(n)


def record_pages(engine: str, n: int, fallback: int = 0) -> None:
    """`n` pages read by `engine`, of which `fallback` came back as raw text."""
    if n:
        METRICS.pages(engine).inc(n)
    if fallback:
        METRICS.fallback_pages(engine).inc(fallback)


def record_documents(outcome: str = "ok", n: int = 1) -> None:
    """`n` documents finished with `outcome` (`ok`, `error`, ...; keep the set small)."""
    METRICS.documents(outcome).inc(n)


def record_upstream_attempt(replica: str, retry: bool) -> None:
    METRICS.attempts(replica).inc()
    if retry:
        METRICS.retries(replica).inc()


def record_upstream_result(replica: str, seconds: float, error: str | None = None) -> None:
    METRICS.upstream_seconds(replica).observe(seconds)
    if error:
        METRICS.errors(replica, error).inc()


def record_queue_wait(seconds: float, background: bool = False) -> None:
    """An interactive call's wait for a slot (background calls wait by design: not counted)."""
    if not background:
        METRICS.queue_seconds.observe(seconds)


BATCH_STATUSES = (
    "validating", "in_progress", "cancelling", "finalizing",
    "completed", "failed", "cancelled", "expired",
)  # fmt: skip


def record_batch_census(counts: dict[str, int], waiting: int) -> None:
    """The jobs database's batches by status and the lines waiting (every status shown)."""
    METRICS.live.batches = {status: counts.get(status, 0) for status in BATCH_STATUSES}
    METRICS.live.batch_lines_waiting = waiting


def record_batch_line(outcome: str, seconds: float) -> None:
    """A batch line committed (`succeeded` or `failed`) after `seconds` on this gateway."""
    METRICS.batch_lines(outcome).inc()
    METRICS.batch_line_seconds.observe(seconds)


def record_webhook_delivery(outcome: str) -> None:
    """A webhook attempt ended: `delivered`, `retried` (another follows) or `failed` (final)."""
    METRICS.webhook_deliveries(outcome).inc()


def record_rejected(reason: str) -> None:
    METRICS.rejected(reason).inc()
