"""Rasterizing, the render pool's side: PDF pages (pdfium) and image frames to PNG pages.

Runs in the worker processes of `ocrflux.documents.render.DocumentRenderer` (pdfium is not
thread-safe). Each page comes out at the toolkit's size (`ocrflux.intake.images.toolkit_size`).
Workers keep a few open PDFs by path, so a page costs a small task message.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pybase64
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from ocrflux.documents import tiff_frames
from ocrflux.documents.png import encode_png
from ocrflux.documents.sources import DocumentKind, DocumentRejected
from ocrflux.intake.image_headers import HeaderRefused, strip_metadata
from ocrflux.intake.image_input import ImageRejected, sniff_mime
from ocrflux.intake.images import (
    MAX_ASPECT_RATIO,
    decode_upright,
    open_image,
    toolkit_size,
)
from ocrflux.observability import configure_logging
from ocrflux.worker_lifetime import exit_with_parent

# PDF's unit: 1 point = 1/72 inch; the toolkit renders at 72 dpi (pdftoppm -r 72).
POINTS_PER_INCH = 72
# Open PDFs a worker keeps (LRU); a document's pages usually go to every worker in turn.
_OPEN_PER_WORKER = 4
# The dpi a page reports (Mistral's `dimensions.dpi`) is 72 x its scale from points, kept to
# 1..MAX_REPORTED_DPI: a 1e9-point page would say 0 (a client's 72 / dpi divides by zero), a
# 0.001-point page 73,727,996. 4,800 is the finest scanners sold; past it no paper has the size.
MAX_REPORTED_DPI = 4800
_RENDER_FLAGS = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER  # annotations; RGB order

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})  # pydantic's spellings of true
_XFA_KINDS = {pdfium_c.FORMTYPE_XFA_FULL: "dynamic", pdfium_c.FORMTYPE_XFA_FOREGROUND: "static"}

logger = logging.getLogger("ocrflux.documents")
_open_pdfs: OrderedDict[str, pdfium.PdfDocument] = OrderedDict()


def worker_init() -> None:
    exit_with_parent()  # a SIGKILLed gateway leaves no render worker behind
    # Ctrl-C reaches the whole process group; the parent shuts the pool down in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # see _cpu_budget
    # Below the event loop, as the image threads are: pages that burn their whole CPU budget
    # take their cores from other pages, not from the gateway's answers and model calls.
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), 10))
    _log_as_the_gateway()


def _log_as_the_gateway() -> None:
    """The worker's log lines in the gateway's format; pypdfium2's own are dropped.

    pypdfium2 warns through Python's last-resort handler, as bare lines on stderr, for every
    XFA form (with advice to rebuild it): the gateway says so once per document instead.
    """
    quiet = logging.getLogger("pypdfium2")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    # From the environment, not Settings: a worker must not load pydantic (its memory is the
    # point of spawning). `ocrflux.api_server` puts the values it loaded (.env too) there.
    debug = os.environ.get("DEBUG", "").strip().lower() in _TRUE
    fmt = "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"
    configure_logging(debug, fmt)


def _note_xfa(pdf: pdfium.PdfDocument) -> None:
    """One debug line when the PDF's form is XFA (pdfium here draws AcroForm fields only)."""
    kind = _XFA_KINDS.get(pdf.get_formtype())
    if kind is not None:
        drawn = "it with XFA" if "XFA" in pdfium.PDFIUM_INFO.flags else "its AcroForm fields only"
        logger.debug("the PDF has an XFA form (%s); pdfium draws %s", kind, drawn)


@contextmanager
def _cpu_budget(seconds: float) -> Iterator[None]:
    """The kernel ends this worker if the task uses more than `seconds` of CPU.

    pdfium cannot be interrupted from Python, and a 130 KB PDF of 20,000 strokes asks for
    over a second of drawing (a few MB, minutes). The parent sees the worker die, fails that
    task alone and starts another worker (see `ocrflux.documents.render_pool`).
    """
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def _refusal(path: str, code: object) -> DocumentRejected:
    """Why pdfium could not load the PDF at `path`, given its last error code.

    pdfium keeps its last error between calls, and a load that fails after parsing (an empty
    page tree) sets none: the code may be an earlier document's. So each reason is checked
    against the file too.
    """
    with open(path, "rb") as file:
        data = file.read()
    encrypted = re.search(rb"/Encrypt\b", data) is not None
    if encrypted and code == pdfium_c.FPDF_ERR_PASSWORD:
        return DocumentRejected(
            "the PDF is encrypted and needs a password: send it without password protection"
        )
    if encrypted and code == pdfium_c.FPDF_ERR_SECURITY:
        return DocumentRejected("the PDF uses an unsupported encryption scheme")
    if (
        re.search(rb"/Type\s*/Pages\b", data) is not None
        and re.search(rb"/Count\s+0\b", data) is not None
        and re.search(rb"/Type\s*/Page\b(?!s)", data) is None
    ):
        return DocumentRejected("the PDF has no pages")
    return DocumentRejected("the PDF could not be read: it is damaged or not a PDF")


def _load_pdf(path: str) -> pdfium.PdfDocument:
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise _refusal(path, getattr(exc, "err_code", None)) from None
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


def inspect_document(path: str, kind: DocumentKind, max_pixels: int, cpu: float) -> int:
    """Worker task: validate the document and count its pages."""
    try:
        with _cpu_budget(cpu):
            if kind == "pdf":
                pdf = _pdf(path)
                _note_xfa(pdf)  # here only: once per document, not per worker that opens it
                return len(pdf)
            image, _ = _read_image(path, max_pixels)
            return tiff_frames.write_table(path, image, max_pixels) if kind == "tiff" else 1
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
    return png, width, height, reported_dpi(max(width, height), max(points))


def _render_frame(
    path: str, kind: DocumentKind, index: int, max_side: int, max_pixels: int
) -> tuple[bytes, int, int, int]:
    if kind == "tiff":
        with tiff_frames.open_frame(path, index, max_pixels) as frame:
            return _encode_frame(frame, "image/tiff", max_side)
    image, mime = _read_image(path, max_pixels)
    return _encode_frame(image, mime, max_side)


def _encode_frame(image: Image.Image, mime: str, max_side: int) -> tuple[bytes, int, int, int]:
    source_side = max(image.size)  # the same upright or not
    pixels = decode_upright(image, mime, lambda w, h: toolkit_size(w, h, max_side))
    if pixels.mode not in ("RGB", "L"):
        pixels = pixels.convert("RGB")
    row = pixels.width * len(pixels.mode)
    png = encode_png(pixels.tobytes(), pixels.width, pixels.height, row, pixels.mode)
    # An image has no physical size: one source pixel counts as one point, as in a PDF.
    return png, pixels.width, pixels.height, reported_dpi(max(pixels.size), source_side)


def reported_dpi(pixels: int, points: float) -> int:
    """72 x the scale from `points` to `pixels` (one side), within 1..MAX_REPORTED_DPI."""
    return min(max(round(POINTS_PER_INCH * pixels / points), 1), MAX_REPORTED_DPI)


def render_page(
    path: str, kind: DocumentKind, index: int, max_side: int, max_pixels: int, cpu: float
) -> tuple[str, int, int, int]:
    """Worker task: one page -> (PNG data URL, width, height, dpi), within `cpu` seconds."""
    try:
        with _cpu_budget(cpu):
            if kind == "pdf":
                png, width, height, dpi = _render_pdf(path, index, max_side)
            else:
                png, width, height, dpi = _render_frame(path, kind, index, max_side, max_pixels)
    except ImageRejected as exc:
        raise DocumentRejected(exc.message, exc.status) from None
    # Base64 here, so the event loop's process only wraps the string.
    url = "data:image/png;base64," + pybase64.b64encode(png).decode("ascii")
    return url, width, height, dpi
