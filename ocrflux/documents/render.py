"""Documents to page images at the toolkit's size: PDF pages (pdfium), image and TIFF frames.

pdfium is not thread-safe, so all rendering runs in a spawn process pool. A document is
written once to a temporary file; workers open it by path and keep a few open documents, so a
page costs a small task message, never the document's bytes. Each page comes back as a PNG
`PreparedImage` whose longest side is exactly `max_side` (`ocrflux.images.toolkit_size`).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pybase64
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from ocrflux.documents.png import encode_png
from ocrflux.documents.sources import DocumentKind, DocumentRejected, sniff_document
from ocrflux.image_headers import HeaderRefused, strip_metadata
from ocrflux.images import (
    MAX_ASPECT_RATIO,
    ImageRejected,
    PreparedImage,
    check_size,
    decode_upright,
    open_image,
    sniff_mime,
    toolkit_size,
)

T = TypeVar("T")

# PDF's unit: 1 point = 1/72 inch; the toolkit renders at 72 dpi (pdftoppm -r 72).
POINTS_PER_INCH = 72
# Open PDFs a worker keeps (LRU); a document's pages usually go to every worker in turn.
_OPEN_PER_WORKER = 4
_RENDER_FLAGS = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER  # annotations; RGB order


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


# --- worker side (runs in the pool's processes) -----------------------------------------------

_open_pdfs: OrderedDict[str, pdfium.PdfDocument] = OrderedDict()


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; the parent shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _looks_empty(path: str) -> bool:
    """pdfium refuses a PDF whose page tree is empty as a format error; tell that case apart."""
    with open(path, "rb") as file:
        data = file.read()
    return (
        re.search(rb"/Type\s*/Pages\b", data) is not None
        and re.search(rb"/Count\s+0\b", data) is not None
        and re.search(rb"/Type\s*/Page\b(?!s)", data) is None
    )


def _load_pdf(path: str) -> pdfium.PdfDocument:
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        # First: pdfium fails on an empty page tree without setting its error code, so the code
        # read then is whatever an earlier document in this worker left (seen: "password").
        if _looks_empty(path):
            raise DocumentRejected("the PDF has no pages") from None
        code = getattr(exc, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentRejected(
                "the PDF is encrypted and needs a password: send it without password protection"
            ) from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise DocumentRejected("the PDF uses an unsupported encryption scheme") from None
        raise DocumentRejected("the PDF could not be read: it is damaged or not a PDF") from None
    if len(pdf) == 0:
        pdf.close()
        raise DocumentRejected("the PDF has no pages")
    with suppress(pdfium.PdfiumError):
        pdf.init_forms()  # so form fields without appearance streams are drawn too
    return pdf


def _pdf(path: str) -> pdfium.PdfDocument:
    """The worker's open handle for `path`; closes handles of documents closed since."""
    for stale in [p for p in _open_pdfs if p != path and not os.path.exists(p)]:
        _open_pdfs.pop(stale).close()
    pdf = _open_pdfs.get(path)
    if pdf is None:
        pdf = _open_pdfs[path] = _load_pdf(path)
        while len(_open_pdfs) > _OPEN_PER_WORKER:
            _open_pdfs.popitem(last=False)[1].close()
    else:
        _open_pdfs.move_to_end(path)
    return pdf


def _read_image(path: str, max_pixels: int) -> tuple[Image.Image, str]:
    with open(path, "rb") as file:
        data = file.read()
    mime = sniff_mime(data)
    try:
        # As the image path: metadata that only costs goes before Pillow parses the header.
        cleaned = strip_metadata(data, mime)
    except HeaderRefused as exc:
        raise DocumentRejected(str(exc)) from None
    return open_image(cleaned or data, mime, max_pixels), mime


def inspect_document(path: str, kind: DocumentKind, max_pixels: int) -> int:
    """Worker task: validate the document and count its pages."""
    try:
        if kind == "pdf":
            return len(_pdf(path))
        image, _ = _read_image(path, max_pixels)
        frames = getattr(image, "n_frames", 1) if kind == "tiff" else 1
        for frame in range(1, frames):
            image.seek(frame)
            check_size(image, max_pixels)
        return frames
    except ImageRejected as exc:
        raise DocumentRejected(exc.message, exc.status) from None


def _render_pdf(path: str, index: int, max_side: int) -> tuple[bytes, int, int, int]:
    pdf = _pdf(path)
    try:
        page = pdf[index]
    except (pdfium.PdfiumError, IndexError):
        raise DocumentRejected(f"page {index} of the PDF could not be read") from None
    try:
        points = page.get_size()  # after the page's /Rotate
        if not all(math.isfinite(p) and p > 0 for p in points):
            raise DocumentRejected(f"page {index} of the PDF has no valid size")
        if max(points) > MAX_ASPECT_RATIO * min(points):
            raise DocumentRejected(
                f"page {index} is {points[0]:.0f}x{points[1]:.0f} points; the model accepts "
                f"aspect ratios up to {MAX_ASPECT_RATIO}:1"
            )
        # The toolkit's 72-dpi render is ceil(points) pixels (pdftoppm); its size rule then
        # applies. Rendering straight to that size is sharper than rendering and resizing.
        width, height = toolkit_size(math.ceil(points[0]), math.ceil(points[1]), max_side)
        bitmap = pdfium.PdfBitmap.new_native(
            width, height, pdfium_c.FPDFBitmap_BGR, rev_byteorder=True
        )
        bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
        # An explicit size, not page.render(scale): pypdfium2 rounds scaled sides up, which
        # makes a Letter page 792 px wide where the toolkit's is 791.
        area = (0, 0, width, height, 0)
        pdfium_c.FPDF_RenderPageBitmap(bitmap, page, *area, _RENDER_FLAGS)
        if pdf.formenv:
            pdfium_c.FPDF_FFLDraw(pdf.formenv, bitmap, page, *area, _RENDER_FLAGS)
        png = encode_png(memoryview(bitmap.buffer), width, height, bitmap.stride, "RGB")
    finally:
        page.close()
    return png, width, height, round(POINTS_PER_INCH * max(width, height) / max(points))


def _render_frame(
    path: str, index: int, max_side: int, max_pixels: int
) -> tuple[bytes, int, int, int]:
    image, mime = _read_image(path, max_pixels)
    if index:
        image.seek(index)
        check_size(image, max_pixels)
    source_side = max(image.size)  # the same upright or not
    pixels = decode_upright(image, mime, lambda w, h: toolkit_size(w, h, max_side))
    if pixels.mode not in ("RGB", "L"):
        pixels = pixels.convert("RGB")
    row = pixels.width * len(pixels.mode)
    png = encode_png(pixels.tobytes(), pixels.width, pixels.height, row, pixels.mode)
    # An image has no physical size: one source pixel counts as one point, as in a PDF.
    dpi = round(POINTS_PER_INCH * max(pixels.size) / source_side)
    return png, pixels.width, pixels.height, dpi


def render_page(
    path: str, kind: DocumentKind, index: int, max_side: int, max_pixels: int
) -> tuple[str, int, int, int]:
    """Worker task: one page -> (PNG data URL, width, height, dpi)."""
    try:
        if kind == "pdf":
            png, width, height, dpi = _render_pdf(path, index, max_side)
        else:
            png, width, height, dpi = _render_frame(path, index, max_side, max_pixels)
    except ImageRejected as exc:
        raise DocumentRejected(exc.message, exc.status) from None
    # Base64 here, so the event loop's process only wraps the string.
    url = "data:image/png;base64," + pybase64.b64encode(png).decode("ascii")
    return url, width, height, dpi


# --- the app's side ---------------------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


class DocumentRenderer:
    """Owns the render pool and the documents' temporary files (one per app)."""

    def __init__(
        self,
        workers: int,
        max_side: int,
        *,
        max_pixels: int = 64_000_000,
        tmp_dir: str | None = None,
    ) -> None:
        self.workers = workers
        self.max_side = max_side
        self.max_pixels = max_pixels
        self._dir = tempfile.mkdtemp(prefix="ocrflux-documents-", dir=tmp_dir)
        self._pool = self._new_pool()
        self._documents: set[str] = set()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        for attempt in range(2):
            pool = self._pool
            try:
                future = pool.submit(fn, *args)
            except BrokenProcessPool:
                self._replace(pool)
                continue
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()  # still queued: it never runs
                raise
            except BrokenProcessPool:
                # A worker died (a PDF that crashes pdfium, or the OOM killer): every task in
                # flight fails with it. Each gets one retry on a new pool; the culprit fails twice.
                self._replace(pool)
                if attempt:
                    break
        raise DocumentRejected(
            "the document could not be rendered: the render worker stopped twice"
        )

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            self._pool = self._new_pool()
            broken.shutdown(wait=False, cancel_futures=True)

    async def open(self, data: bytes) -> OpenDocument:
        """Check the document (kind, encryption, damage, pages) and keep it for rendering."""
        kind = sniff_document(data)
        doc_id = uuid.uuid4().hex
        path = os.path.join(self._dir, doc_id)
        await asyncio.to_thread(_write, path, data)
        try:
            num_pages = await self._call(inspect_document, path, kind, self.max_pixels)
        except BaseException:
            _unlink(path)
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
            render_page, doc.path, doc.kind, index, self.max_side, self.max_pixels
        )
        return RenderedPage(index, PreparedImage(url, width, height, "image/png", True), dpi)

    async def close(self, doc: OpenDocument) -> None:
        """Forget the document: its file goes now, workers drop their handles on their next task."""
        self._documents.discard(doc.id)
        _unlink(doc.path)

    async def aclose(self) -> None:
        """Stop the pool (queued work is cancelled) and remove every temporary file."""
        pool = self._pool
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(shutil.rmtree, self._dir, ignore_errors=True)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
