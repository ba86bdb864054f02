"""Documents to page images at the toolkit's size: the async face the app owns.

`DocumentRenderer` checks a document, writes it once to a temporary file and has pages drawn
by `ocrflux.documents.raster` in a spawn process pool (pdfium is not thread-safe); a page
crosses the process boundary as a path and an index, never as the document's bytes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocrflux.documents.raster import inspect_document, render_page, worker_init
from ocrflux.documents.sources import DocumentKind, DocumentRejected, sniff_document
from ocrflux.documents.tiff_frames import remove_table
from ocrflux.intake.images import PreparedImage

T = TypeVar("T")


@dataclass(frozen=True)
class OpenDocument:
    """A document `DocumentRenderer.open` accepted: its kind, page count and temporary file."""

    id: str
    kind: DocumentKind
    num_pages: int
    size_bytes: int
    path: str = field(repr=False)


@dataclass(frozen=True)
class RenderedPage:
    """One page image (PNG data URL) and the dpi it was rendered at (Mistral's `dimensions`)."""

    index: int
    image: PreparedImage
    dpi: int


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


class DocumentRenderer:
    """Owns the render pool and the documents' temporary files (one per app).

    `page_cpu_seconds` bounds one page (or opening one document): a worker past it is ended.
    """

    def __init__(
        self,
        workers: int,
        max_side: int,
        *,
        max_pixels: int = 64_000_000,
        page_cpu_seconds: float = 20.0,
        tmp_dir: str | None = None,
    ) -> None:
        self.workers = workers
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.page_cpu_seconds = page_cpu_seconds
        self._dir = tempfile.mkdtemp(prefix="ocrflux-documents-", dir=tmp_dir)
        self._pool = _new_pool(workers)
        self._isolation: ProcessPoolExecutor | None = None
        self._isolation_lock = asyncio.Lock()
        self._documents: set[str] = set()

    async def _call(self, failure: str, fn: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        try:
            return await _run(pool, fn, args)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = _new_pool(self.workers)
                pool.shutdown(wait=False, cancel_futures=True)
        # A worker died (a page over its CPU budget, a PDF that crashes pdfium, the OOM killer)
        # and every task in flight failed with it. Each is retried alone in a one-worker pool:
        # the task that ends its worker again is the culprit, and it hurts no other document.
        async with self._isolation_lock:
            isolation = self._isolation = self._isolation or _new_pool(1)
            try:
                return await _run(isolation, fn, args)
            except BrokenProcessPool:
                self._isolation = None
                isolation.shutdown(wait=False, cancel_futures=True)
        limit = f"{self.page_cpu_seconds:g} s"
        raise DocumentRejected(
            f"{failure}: it needs more than {limit} of CPU or stops the renderer"
        )

    async def open(self, data: bytes) -> OpenDocument:
        """Check the document (kind, encryption, damage, pages) and keep it for rendering."""
        kind = sniff_document(data)
        doc_id = uuid.uuid4().hex
        path = os.path.join(self._dir, doc_id)
        await asyncio.to_thread(_write, path, data)
        try:
            num_pages = await self._call(
                "the document could not be read",
                inspect_document,
                path,
                kind,
                self.max_pixels,
                self.page_cpu_seconds,
            )
        except BaseException:
            _unlink(path)
            remove_table(path)
            raise
        self._documents.add(doc_id)
        return OpenDocument(doc_id, kind, num_pages, len(data), path)

    async def render(self, doc: OpenDocument, index: int) -> RenderedPage:
        """Page `index` (0-based) as a PNG at the toolkit's size; cancelling drops queued work."""
        if doc.id not in self._documents:
            raise ValueError(f"document {doc.id} is closed")
        if not 0 <= index < doc.num_pages:
            raise DocumentRejected(
                f"page {index} is out of range: the document has {doc.num_pages} pages"
            )
        url, width, height, dpi = await self._call(
            f"page {index} could not be rendered",
            render_page,
            doc.path,
            doc.kind,
            index,
            self.max_side,
            self.max_pixels,
            self.page_cpu_seconds,
        )
        return RenderedPage(index, PreparedImage(url, width, height, "image/png", True), dpi)

    async def close(self, doc: OpenDocument) -> None:
        """Forget the document: its file goes now, workers drop their handles on their next task."""
        self._documents.discard(doc.id)
        _unlink(doc.path)
        remove_table(doc.path)

    async def aclose(self) -> None:
        """Stop the pools (queued work is cancelled) and remove every temporary file."""
        for pool in (self._pool, self._isolation):
            if pool is not None:
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(shutil.rmtree, self._dir, ignore_errors=True)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_init,
    )


async def _run(pool: ProcessPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    future = pool.submit(fn, *args)  # BrokenProcessPool here too if the pool already broke
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        future.cancel()  # still queued: it never runs
        raise


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
