"""What a client sent (ocrflux.documents.sources): document kinds from their magic bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ocrflux.documents.sources import DocumentRejected, sniff_document
from tests.documents.pdfs import (
    DOCX,
    make_pdf,
    multipage_tiff,
    office_file,
    opendocument,
    text_page,
)


def encode(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "white").save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "kind"), [
    (make_pdf([text_page(["x"])]), "pdf"),
    (b"\xef\xbb\xbf\r\n%PDF-1.4\n...", "pdf"),  # junk before the header, as readers allow
    (encode("PNG"), "image"),
    (encode("JPEG"), "image"),
    (encode("WEBP"), "image"),
    (encode("GIF"), "image"),
    (encode("BMP"), "image"),
    (multipage_tiff([(20, 10), (10, 20)]), "tiff"),
])  # fmt: skip
def test_sniff_document(data: bytes, kind: str) -> None:
    assert sniff_document(data) == kind


@pytest.mark.parametrize(("data", "named"), [
    (b"PK\x03\x04 word document", "application/zip"),
    (office_file("a.txt", "b/c.txt"), "application/zip"),
    (DOCX, "a Word document (.docx)"),
    (office_file("[Content_Types].xml", "xl/workbook.xml"), "an Excel workbook (.xlsx)"),
    (office_file("[Content_Types].xml", "ppt/presentation.xml"),
     "a PowerPoint presentation (.pptx)"),
    # word/ entries far from the start: named from the ZIP's directory at the end
    (office_file("[Content_Types].xml", "word/document.xml", filler=300_000),
     "a Word document (.docx)"),
    (opendocument("text"), "an OpenDocument text (.odt)"),
    (opendocument("spreadsheet"), "an OpenDocument spreadsheet (.ods)"),
    (opendocument("presentation"), "an OpenDocument presentation (.odp)"),
    (b"<!DOCTYPE html><html>", "text/html"),
    (b'{"document": 1}', "application/json"),
    (b"\x00\x00\x00\x18ftypheic....", "image/heic"),
    (b"plain words", "an unknown type"),
])  # fmt: skip
def test_other_types_are_refused_with_what_was_sent_and_what_is_accepted(
    data: bytes, named: str
) -> None:
    with pytest.raises(DocumentRejected) as caught:
        sniff_document(data)
    assert caught.value.status == 400
    assert caught.value.message == (
        f"unsupported document type: {named}; send a PDF, a TIFF (one page per frame) or a "
        "PNG, JPEG, WebP, GIF or BMP image"
    )


def test_an_empty_document_is_called_empty() -> None:
    with pytest.raises(DocumentRejected) as caught:
        sniff_document(b"")
    assert (caught.value.status, caught.value.message) == (
        400,
        "the document is empty (0 bytes); send a PDF, a TIFF (one page per frame) or a PNG, "
        "JPEG, WebP, GIF or BMP image",
    )
