"""`POST /v1/ocr`: Mistral's OCR API, as JSON or a multipart upload (read, validate, delegate)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from ocrflux.documents.protocol import OCRRequest
from ocrflux.documents.service import OCRService, Upload
from ocrflux.errors import APIError, from_validation_error
from ocrflux.http.disconnect import unless_disconnected
from ocrflux.routes.common import SettingsDep, read_body, read_json, require_api_key
from ocrflux.settings import Settings

ocr = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

# Form fields that are not the file; the rest of a form is refused by name like JSON extras.
_MAX_FORM_FIELDS = 32


async def get_ocr(request: Request) -> OCRService:
    return request.app.state.ocr


OCRDep = Annotated[OCRService, Depends(get_ocr)]


def body_limit(settings: Settings) -> int:
    """A document may arrive base64-encoded inside JSON: allow for its 4/3 growth."""
    return max(settings.max_request_bytes, settings.max_document_bytes * 4 // 3 + (1 << 20))


@ocr.post("/ocr")
async def run_ocr(request: Request, settings: SettingsDep, service: OCRDep) -> Response:
    limit = body_limit(settings)
    upload = None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        fields, upload = await _parse_form(request, await read_body(request, limit))
    else:
        fields = await read_json(request, limit, settings.max_json_items)
    if upload is None and fields.get("document") is None:
        raise APIError(
            400,
            "document is required: send {'document': {'type': 'document_url', 'document_url': "
            "...}} or upload the file as multipart/form-data with a 'file' field",
            param="document",
            code="missing_document",
        )
    try:
        ocr_request = OCRRequest.model_validate(fields)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if "text/event-stream" in request.headers.get("accept", ""):
        ocr_request.stream = True
    work = service.respond(ocr_request, upload, request.state.request_id)
    del fields, upload
    return await unless_disconnected(request, work)


async def _parse_form(request: Request, body: bytes) -> tuple[dict[str, Any], Upload | None]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, once(), max_files=1, max_fields=_MAX_FORM_FIELDS, max_part_size=1 << 16
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise APIError(400, f"multipart body: {exc.message}", code="invalid_multipart") from None
    fields: dict[str, Any] = {}
    upload = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "file":
                    raise APIError(
                        400,
                        f"upload the document in a field named 'file', not {name!r}",
                        param=name,
                        code="invalid_multipart",
                    )
                upload = Upload(await value.read(), value.filename)
            else:
                fields[name] = value
    finally:
        await form.close()
    return fields, upload
