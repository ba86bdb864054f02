"""`LocalEngine`: the embedded CPU engine behind the page contract (`ocrflux.engines.base`).

A page's encoded image goes to the `LocalOCRPool` worker processes; their `LocalPage` comes
back as the page answer OCRFlux-3B would give (`PageResponse`), marked `engine="local"`.
The cross-page questions are answered from the text alone (`continuation`): no model, no
network.

Usage counts what the engine did, not tokens it never saw: `completion_tokens` is the number
of non-whitespace characters recognised on the page, `prompt_tokens` is 0.
"""

from __future__ import annotations

import logging

from ocrflux.engines.base import MergeAnswer, PageJob, PageResult, TableMergeAnswer
from ocrflux.engines.local.continuation import continuations, merge_tables
from ocrflux.engines.local.errors import (
    LocalOCRError,
    UnreadableImage,
    UnreadableScript,
    WorkerCrashed,
)
from ocrflux.engines.local.pool import LocalOCRPool
from ocrflux.engines.local.result import LocalPage
from ocrflux.errors import APIError
from ocrflux.format.merge import is_table, page_elements
from ocrflux.format.page import PageResponse
from ocrflux.intake.images import PreparedImage
from ocrflux.protocol import Usage

logger = logging.getLogger("ocrflux.engines.local")

ENGINE_NAME = "local"


def page_response(page: LocalPage) -> PageResponse:
    """A local reading as OCRFlux's page answer: upright by construction (the engine levels
    skew itself), a table page when tables hold most of its text, never a diagram (the engine
    cannot tell one)."""
    elements = page_elements(page.markdown) if page.markdown else []
    table_chars = sum(len(e) for e in elements if is_table(e))
    return PageResponse(
        primary_language=page.primary_language,
        is_rotation_valid=True,
        rotation_correction=0,
        is_table=table_chars > 0 and table_chars * 2 > sum(len(e) for e in elements),
        is_diagram=False,
        natural_text=page.markdown,
    )


def local_usage(page: LocalPage) -> Usage:
    """Characters recognised, reported as completion tokens (see the module docstring)."""
    return Usage(prompt_tokens=0, completion_tokens=page.characters, total_tokens=page.characters)


def failure(exc: LocalOCRError) -> APIError:
    """What a page the engine could not read means to the client."""
    if isinstance(exc, UnreadableImage):
        return APIError(400, f"the page image cannot be read: {exc}", code="invalid_image")
    if isinstance(exc, UnreadableScript):
        return APIError(422, str(exc), code="unreadable_script")
    if isinstance(exc, WorkerCrashed):
        return APIError(503, str(exc), code="local_engine_unavailable")
    return APIError(500, str(exc), code="local_engine_error")


class LocalEngine:
    """Reads pages with the embedded CPU engine in a pool of worker processes."""

    name = ENGINE_NAME

    def __init__(self, pool: LocalOCRPool) -> None:
        self.pool = pool

    @classmethod
    def create(
        cls,
        workers: int,
        threads: int,
        *,
        max_rss_bytes: int = 0,
        tesseract: bool = True,
        recogniser: str = "rapidocr",
    ) -> LocalEngine:
        pool = LocalOCRPool(
            workers, threads, max_rss_bytes, tesseract=tesseract, recogniser=recogniser
        )
        return cls(pool)

    async def start(self) -> None:
        """Start the worker processes and load their models (before the gateway is ready)."""
        await self.pool.start()

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        """Read one page; a page the engine cannot read is a fallback with `error` set."""
        try:
            page = await self.pool.read(image.payload)
        except LocalOCRError as exc:
            logger.warning("local engine could not read a page: %s", exc)
            return PageResult(page=None, engine=self.name, error=failure(exc))
        return PageResult(
            page=page_response(page),
            raw_text=page.markdown,
            usage=local_usage(page),
            engine=self.name,
        )

    def check_page(self, width: int, height: int, job: PageJob) -> None:
        """Nothing to check: the engine has no context window, and `max_tokens` caps a model's
        answer, not recognised text."""

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        return MergeAnswer(continuations(previous, following))

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        return TableMergeAnswer(merge_tables(first, second))
