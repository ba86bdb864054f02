"""Getting documents in: bytes from a URL or an upload, opened as page sources for the pipeline.

A page source produces its pages one at a time (`ocrflux.documents.pipeline.PageSource`):
a PDF or multi-page TIFF renders a page when asked; a plain image is one page, prepared like
any chat image. A chat request's image and file parts become one composite source whose pages
merge across a page break only inside the same document.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import pybase64

from ocrflux import inline_data
from ocrflux.documents.pipeline import PageImage, PageSource
from ocrflux.documents.render import DocumentRenderer, OpenDocument
from ocrflux.documents.sources import DocumentRejected
from ocrflux.errors import APIError
from ocrflux.intake.fetch import RemoteFetcher
from ocrflux.intake.image_input import (
    ImageRejected,
    decode_base64,
    decode_base64_view,
    format_mb,
    split_inline,
)
from ocrflux.intake.images import ImageOptions, PreparedImage, Probe
from ocrflux.intake.preparation import ImagePreparer

# Magic bytes that make an `image_url` a document rather than one image: PDF, and TIFF (which
# may hold many pages).
_DOCUMENT_MAGIC = (b"%PDF-", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# The dpi Mistral reports for an image sent as is (its pixels are its own resolution).
IMAGE_DPI = 72


@dataclass
class ImagePart:
    """An image read up to its header, and the request field it came from."""

    probe: Probe
    param: str | None = None

    def size(self, options: ImageOptions) -> tuple[int, int]:
        """The size it will be sent at."""
        return self.probe.size_after(options)


class SingleImage:
    """An image document: one page, already prepared."""

    def __init__(self, image: PreparedImage, param: str | None = None) -> None:
        self.image = image
        self._param = param

    def param(self, index: int) -> str | None:
        return self._param

    @property
    def num_pages(self) -> int:
        return 1

    def joins(self, index: int) -> bool:
        return False

    async def page(self, index: int) -> PageImage:
        return PageImage(self.image, IMAGE_DPI)

    async def aclose(self) -> None:
        return None


class RenderedDocument:
    """A PDF or TIFF opened by the renderer; pages are rendered when asked for."""

    def __init__(
        self, renderer: DocumentRenderer, document: OpenDocument, param: str | None = None
    ) -> None:
        self.renderer = renderer
        self.document = document
        self._param = param

    def param(self, index: int) -> str | None:
        return self._param

    @property
    def num_pages(self) -> int:
        return self.document.num_pages

    def joins(self, index: int) -> bool:
        return 0 <= index < self.num_pages - 1

    async def page(self, index: int) -> PageImage:
        rendered = await self.renderer.render(self.document, index)
        return PageImage(rendered.image, rendered.dpi)

    async def aclose(self) -> None:
        await self.renderer.close(self.document)


class Composite:
    """Several documents read as one sequence of pages (a chat request's parts, in order)."""

    def __init__(self, parts: Sequence[PageSource]) -> None:
        self.parts = list(parts)
        self._starts: list[int] = []
        total = 0
        for part in self.parts:
            self._starts.append(total)
            total += part.num_pages
        self._total = total

    @property
    def num_pages(self) -> int:
        return self._total

    def _locate(self, index: int) -> tuple[PageSource, int]:
        for part, start in zip(reversed(self.parts), reversed(self._starts), strict=True):
            if index >= start:
                return part, index - start
        raise IndexError(index)

    def joins(self, index: int) -> bool:
        part, local = self._locate(index)
        return part.joins(local)

    def param(self, index: int) -> str | None:
        part, local = self._locate(index)
        return part.param(local)

    async def page(self, index: int) -> PageImage:
        part, local = self._locate(index)
        return await part.page(local)

    async def aclose(self) -> None:
        for part in self.parts:
            await part.aclose()


class DocumentLoader:
    """Turns URLs, uploads and chat parts into page sources (refusals as `APIError` 4xx)."""

    def __init__(
        self,
        renderer: DocumentRenderer,
        images: ImagePreparer,
        fetcher: RemoteFetcher,
        *,
        max_bytes: int,
    ) -> None:
        self.renderer = renderer
        self.images = images
        self.fetcher = fetcher
        self.max_bytes = max_bytes

    async def load(self, url: str, param: str) -> bytes:
        """The document bytes behind a `data:` URL, bare base64, or an http(s) URL."""
        try:
            if url[:8].lower().startswith(("http://", "https://")):
                return await self.fetcher.fetch(url, max_bytes=self.max_bytes, what="document")
            payload = inline_data.take(url)
            if payload is not None:  # a big inline document: decoded off the event loop
                self.check_size(len(payload) * 3 // 4, param)
                try:
                    return await asyncio.to_thread(decode_base64_view, payload, self.max_bytes)
                finally:
                    payload.release()
            _, b64 = split_inline(url)
            self.check_size(len(b64) * 3 // 4, param)
            return decode_base64(url, self.max_bytes)
        except ImageRejected as exc:
            raise APIError(exc.status, exc.message, param=param, code="invalid_document") from None

    def check_size(self, size: int, param: str) -> None:
        if size > self.max_bytes:
            raise APIError(
                413,
                f"document is {format_mb(size)}, the limit is {format_mb(self.max_bytes)}",
                param=param,
                code="document_too_large",
            )

    async def open(self, data: bytes, param: str) -> RenderedDocument:
        """A PDF, TIFF or image, checked and ready to render page by page."""
        self.check_size(len(data), param)
        try:
            document = await self.renderer.open(data)
        except DocumentRejected as exc:
            raise APIError(exc.status, exc.message, param=param, code="invalid_document") from None
        return RenderedDocument(self.renderer, document, param)

    async def chat_image(self, url: str, param: str) -> RenderedDocument | ImagePart:
        """An `image_url` part read up to its header: an image (not decoded yet), or a document
        when the URL holds a PDF or TIFF."""
        try:
            if url[:8].lower().startswith(("http://", "https://")) or _looks_like_document(url):
                data = await self.load(url, param)
                if data.startswith(_DOCUMENT_MAGIC):
                    return await self.open(data, param)
                return ImagePart(await self.images.probe_data(data), param)
            return ImagePart(await self.images.probe(url), param)
        except ImageRejected as exc:
            raise APIError(exc.status, exc.message, param=param, code="invalid_image") from exc

    async def finish(self, part: ImagePart, cap: int | None = None) -> SingleImage:
        """The image decoded and prepared (pixel work in the image pool)."""
        try:
            return SingleImage(await self.images.finish(part.probe, cap), part.param)
        except ImageRejected as exc:
            raise APIError(exc.status, exc.message, param=part.param, code="invalid_image") from exc

    async def chat_file(self, file_data: str, param: str) -> RenderedDocument:
        """A `file` part: its `file_data` is a data: URL of a PDF, TIFF or image."""
        return await self.open(await self.load(file_data, param), param)


def _looks_like_document(url: str) -> bool:
    """True when an inline URL's first bytes are a PDF's or TIFF's (decodes 8 characters)."""
    if inline_data.holds(url):
        return True  # only PDF and TIFF payloads are kept aside
    with contextlib.suppress(ValueError, ImageRejected):
        _, b64 = split_inline(url[:512])
        head = pybase64.b64decode(b64.lstrip()[:8] + "=" * (-len(b64.lstrip()[:8]) % 4))
        return head.startswith(tuple(m[:4] for m in _DOCUMENT_MAGIC))
    return False
