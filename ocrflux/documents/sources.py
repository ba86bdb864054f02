"""What a client sent as a document: its kind from its magic bytes.

Pure and cheap: safe on the event loop. Which pages it asks for is `ocrflux.page_selection`.
"""

from __future__ import annotations

from typing import Literal

from ocrflux.intake.image_input import ImageRejected, describe, sniff_mime

DocumentKind = Literal["pdf", "image", "tiff"]

ACCEPTED = "a PDF, a TIFF (one page per frame) or a PNG, JPEG, WebP, GIF or BMP image"
# The PDF header may follow some junk; readers (and pdfium) look in the first 1024 bytes.
_PDF_HEADER_WINDOW = 1024


class DocumentRejected(Exception):
    """A document the gateway refuses; `status` is 400, or 413 too large."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


def sniff_document(data: bytes) -> DocumentKind:
    """The document's kind from its magic bytes; DocumentRejected naming what was sent."""
    if not data:
        raise DocumentRejected(f"the document is empty (0 bytes); send {ACCEPTED}")
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return "pdf"
    try:
        mime = sniff_mime(data)
    except ImageRejected:
        found = describe(data) or "an unknown type"
        raise DocumentRejected(f"unsupported document type: {found}; send {ACCEPTED}") from None
    return "tiff" if mime == "image/tiff" else "image"
