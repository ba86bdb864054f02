"""Mistral's OCR API on the wire (`POST /v1/ocr`): what we accept and what we answer.

The request follows Mistral's `OCRRequest` so the official `mistralai` SDK works with only its
`server_url` changed; OCRFlux's own options (`skip_cross_page_merge`, `stream`) ride along.
Options Mistral has and OCRFlux cannot honour are refused by name, never silently ignored —
except `include_blocks`, which the SDK sends as `true` by default (it is accepted, and no
blocks are returned: OCRFlux gives no bounding boxes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TableFormat = Literal["html", "markdown"]

# Mistral options that need something OCRFlux-3B does not produce (annotations, confidence
# scores, header/footer extraction): refused with a 400 naming the field when they ask for it.
UNSUPPORTED_OPTIONS = {
    "bbox_annotation_format": "OCRFlux does not produce bounding-box annotations",
    "document_annotation_format": "OCRFlux does not produce document annotations",
    "document_annotation_prompt": "OCRFlux does not produce document annotations",
    "confidence_scores_granularity": "OCRFlux does not produce confidence scores",
    "extract_header": "OCRFlux does not separate page headers",
    "extract_footer": "OCRFlux does not separate page footers",
}


class DocumentURL(BaseModel):
    """`{"type": "document_url", "document_url": URL}`: a PDF, TIFF or image by URL."""

    model_config = ConfigDict(extra="allow")

    type: Literal["document_url"]
    document_url: str = Field(min_length=1)
    document_name: str | None = None


class ImageURLObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str = Field(min_length=1)
    detail: str | None = None


class ImageDocument(BaseModel):
    """`{"type": "image_url", "image_url": URL | {"url": URL}}`: one page."""

    model_config = ConfigDict(extra="allow")

    type: Literal["image_url"]
    image_url: str | ImageURLObject

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class FileDocument(BaseModel):
    """`{"type": "file", "file_id": ID}`: a document uploaded to `POST /v1/files`
    (purpose `ocr`), Mistral's file chunk."""

    model_config = ConfigDict(extra="allow")

    type: Literal["file"]
    file_id: str = Field(min_length=1, max_length=128)


class OCRRequest(BaseModel):
    """The fields of Mistral's OCR request the gateway understands."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    document: DocumentURL | ImageDocument | FileDocument | None = Field(None, discriminator="type")
    pages: list[int] | str | None = None
    table_format: TableFormat | None = None
    include_image_base64: bool | None = None
    image_limit: int | None = Field(None, ge=0)
    image_min_size: int | None = Field(None, ge=0)
    include_blocks: bool | None = None
    # OCRFlux's own options.
    skip_cross_page_merge: bool = False
    stream: bool = False

    @field_validator("pages", mode="before")
    @classmethod
    def _pages_shape(cls, value: Any) -> Any:
        if isinstance(value, list) and any(
            isinstance(v, bool) or not isinstance(v, int) for v in value
        ):
            raise ValueError(
                "pages must be a list of 0-based page numbers or a string like '0-2,5'"
            )
        return value

    def unsupported(self) -> tuple[str, str] | None:
        """(field, reason) for the first Mistral option that asks for what we cannot do."""
        extra = self.model_extra or {}
        for name, reason in UNSUPPORTED_OPTIONS.items():
            value = extra.get(name)
            if value not in (None, False, ""):
                return name, reason
        return None

    @property
    def url(self) -> str:
        document = self.document
        if document is None or isinstance(document, FileDocument):
            return ""
        return document.document_url if isinstance(document, DocumentURL) else document.url


# --- answers ----------------------------------------------------------------------------------


def page_object(
    index: int, markdown: str, dimensions: dict[str, int] | None, engine: str
) -> dict[str, Any]:
    """One entry of Mistral's `pages` (OCRFlux extracts no images: `images` is empty), plus
    the engine that read it (`vllm`, `local`; "" for a page that could not be rendered)."""
    return {
        "index": index,
        "markdown": markdown,
        "images": [],
        "dimensions": dimensions,
        "engine": engine,
    }


def ocr_body(
    *,
    model: str,
    pages: list[dict[str, Any]],
    doc_size_bytes: int,
    num_pages: int,
    document_text: str,
    page_texts: dict[str, str],
    fallback_pages: list[int],
    usage: dict[str, int],
) -> dict[str, Any]:
    """Mistral's OCR response plus the OCRFlux toolkit's own result fields."""
    return {
        "pages": pages,
        "model": model,
        "usage_info": {"pages_processed": len(pages), "doc_size_bytes": doc_size_bytes},
        "document_annotation": None,
        # The toolkit's result fields, so OCRFlux users' code keeps working.
        "num_pages": num_pages,
        "document_text": document_text,
        "page_texts": page_texts,
        "fallback_pages": fallback_pages,
        "usage": usage,
    }
