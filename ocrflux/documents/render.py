"""Documents to page images at the toolkit's size: the async face the app owns.

`DocumentRenderer` checks a document, writes it once to a temporary file and has pages drawn
by `ocrflux.documents.raster` in a spawn process pool (pdfium is not thread-safe), in which
documents take turns (`ocrflux.documents.render_pool`); a page crosses the process boundary
as a path and an index, never as the document's bytes.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ocrflux.documents.raster import inspect_document, render_page, worker_init
from ocrflux.documents.render_pool import RenderPool, WorkerDied
from ocrflux.documents.scratch import ScratchFolder
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
        self._scratch = ScratchFolder(tmp_dir)  # removes dead gateways' folders first
        self._dir = self._scratch.path
        self._pool = RenderPool(workers, worker_init)
        self._documents: set[str] = set()

    @property
    def flows(self) -> int:
        """Documents with pages waiting for a worker or being rendered (for tests)."""
        return self._pool.flows

    def worker_pids(self) -> list[int]:
        """The render processes' ids (for benchmarks and tests)."""
        return self._pool.pids()

    async def _call(self, doc_id: str, failure: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._pool.run(doc_id, fn, *args)
        except WorkerDied:
            # Its own worker died (a page over its CPU budget, a PDF that crashes pdfium, the
            # OOM killer): no other task ran there, so this one is the culprit.
            limit = f"{self.page_cpu_seconds:g} s"
            raise DocumentRejected(
                f"{failure}: it needs more than {limit} of CPU or stops the renderer"
            ) from None

    async def open(self, data: bytes) -> OpenDocument:
        """Check the document (kind, encryption, damage, pages) and keep it for rendering."""
        kind = sniff_document(data)
        doc_id = uuid.uuid4().hex
        path = os.path.join(self._dir, doc_id)
        await asyncio.to_thread(_write, path, data)
        try:
            num_pages = await self._call(
                doc_id,
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
            doc.id,
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
        """Stop the pool (queued work is cancelled) and remove every temporary file."""
        await self._pool.aclose()
        await asyncio.to_thread(self._scratch.remove)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
