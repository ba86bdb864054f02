"""`create_app(settings)`: the FastAPI app, its shared state and its lifespan."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from starlette.types import ASGIApp

from ocrflux import __version__
from ocrflux.chat import ChatService
from ocrflux.documents.loading import DocumentLoader
from ocrflux.documents.pipeline import DocumentReader
from ocrflux.documents.render import DocumentRenderer
from ocrflux.documents.service import OCRService
from ocrflux.engines.factory import build_engines, require_local_engine
from ocrflux.errors import install_handlers
from ocrflux.http.budget import BodyBudget
from ocrflux.http.edge import Edge
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.jobs.delivery import WebhookDelivery, WebhookSender
from ocrflux.jobs.executor import LineExecutor
from ocrflux.jobs.service import JobsService
from ocrflux.jobs.storage import LocalFileStorage
from ocrflux.jobs.store import Catalog, Outbox, WorkQueue, connect, database_url, describe
from ocrflux.jobs.webhooks import batch_event
from ocrflux.jobs.worker import BatchWorker
from ocrflux.metrics import watch_upstream
from ocrflux.pages import PageReader
from ocrflux.routes import HOT_ROUTES, ROUTERS
from ocrflux.settings import Settings
from ocrflux.upstream import LeanTransport, Upstream

logger = logging.getLogger("ocrflux")

# PDF pages are rendered at this longest side when IMAGE_MAX_SIDE=0 ("no resize") asks for none:
# a PDF page has no pixel size of its own.
DEFAULT_PAGE_SIDE = 1024


async def report_upstream(upstream: Upstream) -> None:
    """Check every replica and say, in one line each, what is wrong."""
    for replica in await upstream.check():
        mismatch = upstream.model_mismatch(replica)
        if mismatch:
            logger.error("model name mismatch: %s", mismatch)
        elif not replica.reachable or not replica.healthy:
            logger.warning("vLLM at %s is not ready yet (%s)", replica.base_url, replica.last_error)
        else:
            logger.info("vLLM at %s serves %s", replica.base_url, replica.served_models)


def gateway_name() -> str:
    """This gateway among the ones sharing a jobs database (its leases say who holds them)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _room_for_batches(settings: Settings, upstream: Upstream) -> Callable[[], bool]:
    """Claim more batch lines only while their upstream calls are not waiting for capacity
    (so lines go to the gateways that can run them now)."""
    if settings.ocr_backend == "local":
        return lambda: True
    return lambda: upstream.admission.background_queued == 0


class GatewayApp(FastAPI):
    """FastAPI with the gateway's edge around its whole middleware stack (`ocrflux.http.edge`)."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return Edge(super().build_middleware_stack(), HOT_ROUTES, settings.log_format == "json")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway; raises `LocalEngineMissing` when the settings need the absent `cpu` extra."""
    settings = settings or Settings()
    require_local_engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transport = None  # httpx's own (httpcore), the fallback if ours ever misbehaves
        if settings.upstream_transport == "lean":
            transport = LeanTransport(settings.pool_max_connections, settings.pool_max_keepalive)
        upstream = Upstream(settings, transport=transport)
        images = ImagePreparer(settings)
        renderer = DocumentRenderer(
            settings.render_workers,
            settings.image_max_side or DEFAULT_PAGE_SIDE,
            max_pixels=settings.max_image_pixels,
        )
        engines = build_engines(settings, upstream, images)
        loader = DocumentLoader(
            renderer, images, images.fetcher, max_bytes=settings.max_document_bytes
        )
        reader = DocumentReader(
            engines.page,
            pages_in_flight=settings.pages_in_flight,
            max_error_rate=settings.max_page_error_rate,
            keep_images=settings.keep_image_placeholders,
        )
        url = database_url(settings.jobs_database_url, settings.data_dir)
        database = await connect(url)
        logger.info("jobs database: %s", describe(url))
        storage = LocalFileStorage(settings.data_dir)
        storage.clean_spool(older_than=2 * settings.request_body_timeout + 3600)
        catalog = Catalog(database)
        jobs = JobsService(settings, catalog, storage)
        chat = ChatService(settings, upstream, images, PageReader(settings, loader, reader))
        ocr = OCRService(settings, loader, reader, files=jobs)
        me = gateway_name()
        # With webhooks on, a batch's end enqueues its event, and this gateway sends events.
        webhooks = None
        if settings.webhook_url:
            webhooks = WebhookDelivery(settings, Outbox(database, me), WebhookSender(settings))
        worker = None
        if settings.batch_worker:
            worker = BatchWorker(
                settings,
                catalog,
                WorkQueue(database, me, on_end=batch_event if webhooks else None),
                storage,
                LineExecutor(settings, storage, chat, ocr),
                has_room=_room_for_batches(settings, upstream),
            )
            jobs.wake = worker.wake
        app.state.upstream = upstream
        # Multipart uploads are written here as they arrive (ocrflux.http.uploads): the
        # storage's spool, which start-up cleans of what a killed gateway left.
        app.state.upload_dir = storage.spool_dir
        app.state.chat = chat
        app.state.ocr = ocr
        app.state.jobs = jobs
        app.state.engines = engines
        watch_upstream(upstream)
        if settings.max_concurrent_requests > settings.pool_max_connections:
            logger.warning(
                "MAX_CONCURRENT_REQUESTS=%d is above POOL_MAX_CONNECTIONS=%d: calls beyond the "
                "pool wait for a connection and may fail with a pool timeout",
                settings.max_concurrent_requests,
                settings.pool_max_connections,
            )
        try:
            if engines.local is not None:
                # Workers spawned and models loaded before the gateway answers anything.
                await engines.local.start()
                logger.info(
                    "local OCR engine ready: %d workers x %d threads",
                    settings.local_workers,
                    settings.local_threads,
                )
            if settings.ocr_backend == "vllm":  # else nothing ever calls vLLM
                await report_upstream(upstream)
                upstream.health.start()
            if worker is not None:
                worker.start()
            if webhooks is not None:
                webhooks.start()
            yield
        finally:
            if worker is not None:
                await worker.aclose()
            if webhooks is not None:
                await webhooks.aclose()
            await database.dispose()
            watch_upstream(None)
            if engines.local is not None:
                await engines.local.aclose()
            await images.aclose()
            await renderer.aclose()
            await upstream.aclose()

    app = GatewayApp(
        title="OCRFlux API gateway",
        version=__version__,
        lifespan=lifespan,
        # The schema names every route and field: served only where the docs are (DEBUG).
        docs_url="/docs" if settings.debug else None,
        openapi_url="/openapi.json" if settings.debug else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.body_budget = BodyBudget(settings.max_body_memory_bytes)
    # Set on SIGTERM (ocrflux.api_server): /ready answers 503 from then on.
    app.state.draining = False
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
