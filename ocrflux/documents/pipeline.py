"""Reading a whole document: render lazily, read pages with a bound, merge across pages.

Follows the OCRFlux toolkit's `client.request()` stage by stage — pages, element-merge
detection for each pair of consecutive readable pages, table merges in the toolkit's order,
then assembly — with the gateway's limits: at most `pages_in_flight` pages of one document
are rendered or read at once (so a 500-page PDF never holds 500 bitmaps nor takes the whole
upstream), and everything stops when the consumer does (a client that disconnects cancels
its document's pending calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ocrflux.documents.sources import DocumentRejected
from ocrflux.engines.base import PageEngine, PageJob, PageResult
from ocrflux.errors import APIError
from ocrflux.format.merge import (
    assemble,
    page_elements,
    plan_table_merges,
    table_merge_inputs,
)
from ocrflux.format.page import render_page
from ocrflux.intake.images import ImageRejected, PreparedImage
from ocrflux.metrics import record_pages
from ocrflux.observability import add_pages
from ocrflux.protocol import Usage

logger = logging.getLogger("ocrflux.documents")
T = TypeVar("T")


@dataclass(frozen=True)
class PageImage:
    """One page ready for an engine, and how it was made (for Mistral's `dimensions`)."""

    image: PreparedImage
    dpi: int


class PageSource(Protocol):
    """A document whose pages are produced one at a time, on demand."""

    @property
    def num_pages(self) -> int: ...

    def joins(self, index: int) -> bool:
        """True when page `index` and the next are consecutive pages of one document."""
        ...

    def param(self, index: int) -> str | None:
        """The request field page `index` came from (for errors that name it)."""
        ...

    async def page(self, index: int) -> PageImage: ...

    async def aclose(self) -> None: ...


@dataclass
class PageOutcome:
    """One selected page once read."""

    index: int  # 0-based page number in its document
    result: PageResult
    width: int
    height: int
    dpi: int
    # The toolkit's element list (blocks of the page Markdown); None for a fallback page.
    elements: list[str] | None

    @property
    def fallback(self) -> bool:
        return self.result.fallback


@dataclass
class DocumentOutcome:
    """A document read: its pages, the merged text, and what it cost."""

    num_pages: int
    pages: list[PageOutcome]
    text: str
    usage: Usage = field(default_factory=Usage)

    @property
    def fallback_pages(self) -> list[int]:
        return [p.index for p in self.pages if p.fallback]


@dataclass(frozen=True)
class PageRead:
    """Event: the next page in page order is done."""

    page: PageOutcome
    done: int
    total: int


@dataclass(frozen=True)
class MergeStarted:
    """Event: every page is read; the cross-page merge begins over `pairs` page pairs."""

    pairs: int


@dataclass(frozen=True)
class DocumentRead:
    """Event: the document is finished."""

    outcome: DocumentOutcome


DocumentEvent = PageRead | MergeStarted | DocumentRead


class DocumentReader:
    """Reads documents through a page engine (the same for every engine)."""

    def __init__(
        self,
        engine: PageEngine,
        *,
        pages_in_flight: int,
        max_error_rate: float = 1.0,
        keep_images: bool = False,
    ) -> None:
        self.engine = engine
        self.pages_in_flight = pages_in_flight
        self.max_error_rate = max_error_rate
        self.keep_images = keep_images

    async def read(
        self,
        source: PageSource,
        selection: Sequence[int],
        job: PageJob,
        *,
        merge: bool = True,
        fallback_text: bool = False,
    ) -> AsyncGenerator[DocumentEvent, None]:
        """Events for `selection` (0-based pages) of `source`, pages in page order.

        A fallback page contributes nothing to the document text, as in the toolkit, unless
        `fallback_text` asks for its raw answer (chat does: the client sees what was read).
        Raises `APIError` when every page failed to be read at all (the first page's error),
        or when fallback pages exceed `max_error_rate`.
        """
        usage = Usage()
        pages: list[PageOutcome] = []
        async for outcome in self._read_pages(source, selection, job):
            if outcome.fallback and fallback_text and outcome.result.raw_text.strip():
                outcome.elements = [outcome.result.raw_text.strip()]
            pages.append(outcome)
            usage.add(outcome.result.usage.model_dump())
            record_pages(outcome.result.engine, 1, fallback=int(outcome.fallback))
            add_pages(1)
            yield PageRead(outcome, len(pages), len(selection))
        self._check_failures(pages)
        pairs = _consecutive_readable(pages, source) if merge else []
        if pairs:
            yield MergeStarted(len(pairs))
        text, merge_usage = await self._merge(pages, pairs, job)
        usage.add(merge_usage.model_dump())
        yield DocumentRead(DocumentOutcome(source.num_pages, pages, text, usage))

    async def _read_pages(
        self, source: PageSource, selection: Sequence[int], job: PageJob
    ) -> AsyncIterator[PageOutcome]:
        """Read pages with at most `pages_in_flight` rendered-or-reading; yield in page order."""
        slots = asyncio.Semaphore(self.pages_in_flight)
        started: asyncio.Queue[asyncio.Task[PageOutcome]] = asyncio.Queue()
        tasks: list[asyncio.Task[PageOutcome]] = []

        async def one(index: int) -> PageOutcome:
            try:
                return await self._read_one(source, index, job)
            finally:
                slots.release()

        async def start_in_order() -> None:
            for index in selection:
                await slots.acquire()
                task = asyncio.create_task(one(index))
                tasks.append(task)
                started.put_nowait(task)

        starter = asyncio.create_task(start_in_order())
        try:
            for _ in selection:
                yield await (await started.get())
        finally:
            for task in [starter, *tasks]:
                task.cancel()
            await asyncio.gather(starter, *tasks, return_exceptions=True)

    async def _read_one(self, source: PageSource, index: int, job: PageJob) -> PageOutcome:
        try:
            page = await source.page(index)
        except (DocumentRejected, ImageRejected) as exc:
            # One unreadable page does not sink the document: it is a fallback page, as in
            # the toolkit, and says why.
            logger.warning("page %d could not be rendered: %s", index, exc)
            error = APIError(400, f"page {index} could not be rendered: {exc}", code="bad_page")
            return PageOutcome(index, PageResult(None, error=error), 0, 0, 0, None)
        try:
            result = await self.engine.read_page(page.image, job)
        except APIError as exc:
            if exc.code == "invalid_image" and exc.param is None:  # say which image it was
                exc.param = source.param(index)
            raise
        elements = None if result.page is None else page_elements(self._markdown(result))
        image = page.image
        return PageOutcome(index, result, image.width, image.height, page.dpi, elements)

    def _check_failures(self, pages: list[PageOutcome]) -> None:
        failed = [p for p in pages if p.fallback]
        if not failed:
            return
        errors = [p.result.error for p in failed if p.result.error is not None]
        if len(errors) == len(pages):
            raise errors[0]
        if len(failed) / len(pages) > self.max_error_rate:
            raise APIError(
                502,
                f"{len(failed)} of {len(pages)} pages could not be read, more than "
                f"MAX_PAGE_ERROR_RATE={self.max_error_rate:g} allows (fallback pages: "
                f"{', '.join(str(p.index) for p in failed[:20])})",
                code="too_many_fallback_pages",
            )

    def _markdown(self, result: PageResult) -> str:
        assert result.page is not None
        return render_page(result.page, keep_image_placeholders=self.keep_images)

    async def _merge(
        self, pages: list[PageOutcome], pairs: list[tuple[int, int]], job: PageJob
    ) -> tuple[str, Usage]:
        """Stages 3-5 of the toolkit: detect, merge tables, assemble (positions, not indexes)."""
        usage = Usage()
        elements = [p.elements if not p.fallback else None for p in pages]
        answers = await self._bounded(
            self.engine.detect_merges(_els(elements[a]), _els(elements[b]), job) for a, b in pairs
        )
        detected: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for pair, answer in zip(pairs, answers, strict=True):
            usage.add(answer.usage.model_dump())
            if answer.pairs:
                detected[pair] = answer.pairs
        tables: dict[tuple[int, int, int, int], str] = {}
        for batch in plan_table_merges(elements, detected):
            inputs = [table_merge_inputs(elements, tables, key) for key in batch]
            merged = await self._bounded(
                self.engine.merge_tables(first, second, job) for first, second in inputs
            )
            for key, table in zip(batch, merged, strict=True):
                usage.add(table.usage.model_dump())
                if table.table is not None:
                    tables[key] = table.table
        return assemble([p.elements for p in pages], detected, tables), usage

    async def _bounded(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        """Run calls concurrently, at most `pages_in_flight` at once, results in order."""
        slots = asyncio.Semaphore(self.pages_in_flight)

        async def one(call: Awaitable[T]) -> T:
            async with slots:
                return await call

        return list(await asyncio.gather(*(one(c) for c in calls)))


def _els(elements: list[str] | None) -> list[str]:
    assert elements is not None  # pairs only ever name readable pages
    return elements


def _consecutive_readable(pages: list[PageOutcome], source: PageSource) -> list[tuple[int, int]]:
    """Positions (k, k+1) of selected pages that are consecutive in one document and readable."""
    return [
        (k, k + 1)
        for k in range(len(pages) - 1)
        if pages[k + 1].index == pages[k].index + 1
        and source.joins(pages[k].index)
        and not pages[k].fallback
        and not pages[k + 1].fallback
    ]
