"""`create_app(settings)`: the FastAPI app, its shared state and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ocrflux import __version__
from ocrflux.chat import ChatService
from ocrflux.engines.vllm import VLLMEngine
from ocrflux.errors import install_handlers
from ocrflux.observability import RequestIdMiddleware
from ocrflux.preparation import ImagePreparer
from ocrflux.routes import ROUTERS
from ocrflux.settings import Settings
from ocrflux.upstream import LeanTransport, Upstream

logger = logging.getLogger("ocrflux")


async def report_upstream(upstream: Upstream) -> None:
    """Check every replica and say, in one line each, what is wrong."""
    for replica in await upstream.check():
        mismatch = upstream.model_mismatch(replica)
        if mismatch:
            logger.error("model name mismatch: %s", mismatch)
        elif not replica.reachable:
            logger.warning("vLLM at %s is not reachable yet (%s)", replica.base_url, replica.error)
        else:
            logger.info("vLLM at %s serves %s", replica.base_url, replica.served_models)


async def poll_upstream(upstream: Upstream, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await upstream.check()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transport = None  # httpx's own (httpcore), the fallback if ours ever misbehaves
        if settings.upstream_transport == "lean":
            transport = LeanTransport(settings.pool_max_connections, settings.pool_max_keepalive)
        upstream = Upstream(settings, transport=transport)
        images = ImagePreparer(settings)
        app.state.upstream = upstream
        engine = VLLMEngine(settings, upstream, images)
        app.state.chat = ChatService(settings, upstream, images, engine)
        await report_upstream(upstream)
        poller = None
        if settings.health_check_interval > 0:
            poller = asyncio.create_task(poll_upstream(upstream, settings.health_check_interval))
        try:
            yield
        finally:
            if poller:
                poller.cancel()
            await images.aclose()
            await upstream.aclose()

    app = FastAPI(
        title="OCRFlux API gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.debug else None,
        redoc_url=None,
    )
    app.state.settings = settings
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(RequestIdMiddleware)
    return app
