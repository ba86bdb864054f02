"""`POST /v1/ocr`: a Mistral OCR request in (JSON or upload), the whole document read and shaped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.responses import Response

from ocrflux.documents.limits import DocumentPages, PageLimits
from ocrflux.documents.loading import DocumentLoader
from ocrflux.documents.pipeline import (
    DocumentEvent,
    DocumentOutcome,
    DocumentRead,
    DocumentReader,
    MergeStarted,
    PageOutcome,
    PageRead,
    PageSource,
)
from ocrflux.documents.protocol import FileDocument, OCRRequest, ocr_body, page_object
from ocrflux.engines.base import BACKEND_HEADER, PageJob, engines_used
from ocrflux.errors import APIError, from_validation_error
from ocrflux.format.checkboxes import normalize_checkboxes
from ocrflux.format.pipe_tables import tables_to_markdown
from ocrflux.http.sse import EventStream, named_event
from ocrflux.metrics import record_documents
from ocrflux.page_selection import PageSelection, PageSelectionError, parse_selection
from ocrflux.protocol import json_response
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux.documents")


@dataclass
class Upload:
    """A document sent as multipart/form-data: its bytes and the form's other fields."""

    data: bytes
    filename: str | None


class DocumentFiles(Protocol):
    """Documents uploaded earlier (`POST /v1/files`, purpose `ocr`), read by id."""

    async def read_document(self, owner: str, file_id: str, max_bytes: int) -> bytes:
        """The file's bytes; `APIError` 404 when `owner` has no such file, 413 when larger
        than `max_bytes`."""
        ...


class OCRService:
    """Answers Mistral-style OCR requests with the documents pipeline."""

    def __init__(
        self,
        settings: Settings,
        loader: DocumentLoader,
        reader: DocumentReader,
        files: DocumentFiles | None = None,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.reader = reader
        self.files = files
        self.limits = PageLimits.from_settings(settings)

    async def answer(
        self, fields: dict[str, Any], upload: Upload | None, request_id: str, *, owner: str
    ) -> Response:
        """A request's fields (JSON, a form's fields, or a batch line's body) validated and
        answered; `owner` is whose uploaded files a `file_id` document may name."""
        if upload is None and fields.get("document") is None:
            raise APIError(
                400,
                "document is required: send {'document': {'type': 'document_url', "
                "'document_url': ...}} or upload the file as multipart/form-data with a "
                "'file' field",
                param="document",
                code="missing_document",
            )
        try:
            request = OCRRequest.model_validate(fields)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        del fields
        return await self.respond(request, upload, request_id, owner=owner)

    async def respond(
        self, request: OCRRequest, upload: Upload | None, request_id: str, *, owner: str = ""
    ) -> Response:
        unsupported = request.unsupported()
        if unsupported:
            name, reason = unsupported
            raise APIError(
                400, f"{name} is not supported: {reason}", param=name, code="unsupported"
            )
        if upload is not None:
            data, param = upload.data, "file"
        elif isinstance(request.document, FileDocument):
            data, param = await self._stored(owner, request.document.file_id), "document"
        else:
            data, param = await self.loader.load(request.url, "document"), "document"
        source = await self.loader.open(data, param)
        try:
            selection = self._select(request, source.num_pages)
        except BaseException:
            await source.aclose()
            raise
        answer = _Answer(self.settings, request, len(data))
        del data
        events = self._events(source, selection, PageJob(request_id), request)
        if request.stream:
            # Bounded like every stream: a client that stops reading is cut (and its pages
            # cancelled) after CLIENT_WRITE_TIMEOUT. The backend header names the engine
            # pages are expected to go to; each page event says which read it.
            return EventStream(
                answer.stream(events),
                write_timeout=self.settings.client_write_timeout,
                on_close=events.aclose,
                headers={BACKEND_HEADER: self.reader.engine.name},
            )
        try:
            async with asyncio.timeout(self.settings.document_timeout):
                async for event in events:
                    if isinstance(event, DocumentRead):
                        outcome = event.outcome
                        backend = engines_used(p.result for p in outcome.pages)
                        return json_response(
                            answer.body(outcome), headers={BACKEND_HEADER: backend}
                        )
        except TimeoutError:
            raise _deadline(self.settings.document_timeout) from None
        finally:
            await events.aclose()
        raise AssertionError("the pipeline ended without a result")  # pragma: no cover

    async def _events(
        self, source: PageSource, selection: list[int], job: PageJob, request: OCRRequest
    ) -> AsyncGenerator[DocumentEvent, None]:
        outcome = "failed"
        try:
            merge = not request.skip_cross_page_merge
            async for event in self.reader.read(source, selection, job, merge=merge):
                if isinstance(event, DocumentRead):
                    outcome = "ok"
                yield event
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "abandoned" if outcome == "failed" else outcome
            raise
        finally:
            record_documents(outcome)
            await source.aclose()

    async def _stored(self, owner: str, file_id: str) -> bytes:
        if self.files is None:
            raise APIError(
                400,
                "document.type 'file' needs the Files API, which this gateway does not run",
                param="document.file_id",
                code="unsupported",
            )
        return await self.files.read_document(owner, file_id, self.settings.max_document_bytes)

    def _select(self, request: OCRRequest, num_pages: int) -> list[int]:
        """The pages to read, checked against the page limits before any is listed."""
        try:
            if request.pages is None:
                selection = PageSelection.every(num_pages)
            else:
                # At most one number or range per page a document may have read: a longer
                # spec is refused from its length, before it is split.
                selection = parse_selection(
                    request.pages, num_pages=num_pages, max_ranges=self.limits.per_document
                )
        except PageSelectionError as exc:
            raise APIError(400, exc.message, param="pages", code="invalid_pages") from None
        self.limits.check([DocumentPages(selection.count, "pages", selected=True)])
        return selection.pages()


class _Answer:
    """Shapes one request's outcome: Mistral's page objects plus the toolkit's fields."""

    def __init__(self, settings: Settings, request: OCRRequest, doc_size: int) -> None:
        self.settings = settings
        self.model = request.model or settings.ocrflux_model
        self.markdown_tables = request.table_format == "markdown"
        self.doc_size = doc_size

    def text(self, markdown: str) -> str:
        markdown = normalize_checkboxes(markdown)
        return tables_to_markdown(markdown) if self.markdown_tables else markdown

    def page(self, page: PageOutcome) -> dict[str, Any]:
        markdown = "" if page.elements is None else self.text("\n\n".join(page.elements))
        dimensions = (
            {"dpi": page.dpi, "height": page.height, "width": page.width} if page.width else None
        )
        return page_object(page.index, markdown, dimensions, page.result.engine)

    def body(self, outcome: DocumentOutcome) -> dict[str, Any]:
        pages = [self.page(p) for p in outcome.pages]
        page_texts = {
            str(p.index): obj["markdown"]
            for p, obj in zip(outcome.pages, pages, strict=True)
            if not p.fallback
        }
        return ocr_body(
            model=self.model,
            pages=pages,
            doc_size_bytes=self.doc_size,
            num_pages=outcome.num_pages,
            document_text=self.text(outcome.text),
            page_texts=page_texts,
            fallback_pages=outcome.fallback_pages,
            usage=outcome.usage.model_dump(),
        )

    async def stream(self, events: AsyncGenerator[DocumentEvent, None]) -> AsyncIterator[bytes]:
        """Server-sent events: `page` per page in order, `merge`, then `result` (or `error`)."""
        try:
            async with asyncio.timeout(self.settings.document_timeout):
                async for event in events:
                    if isinstance(event, PageRead):
                        data = self.page(event.page)
                        data.update(
                            fallback=event.page.fallback, done=event.done, total=event.total
                        )
                        yield named_event("page", data)
                    elif isinstance(event, MergeStarted):
                        yield named_event("merge", {"pairs": event.pairs})
                    else:
                        yield named_event("result", self.body(event.outcome))
        except TimeoutError:
            yield named_event("error", _deadline(self.settings.document_timeout).body())
        except APIError as exc:
            yield named_event("error", exc.body())
        finally:
            await events.aclose()


def _deadline(seconds: float) -> APIError:
    return APIError(504, f"the document took longer than {seconds:g} s", code="timeout")
