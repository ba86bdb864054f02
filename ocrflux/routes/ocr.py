"""`POST /v1/ocr`: Mistral's OCR API, as JSON or a multipart upload (read, validate, delegate)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ocrflux.documents.service import OCRService, Upload
from ocrflux.http.disconnect import unless_disconnected
from ocrflux.http.uploads import read_multipart
from ocrflux.routes.common import SettingsDep, owner_of, read_json, require_api_key
from ocrflux.settings import Settings

ocr = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

# Form fields that are not the file; the rest of a form is refused by name like JSON extras.
_MAX_FORM_FIELDS = 32
_MAX_FIELD_BYTES = 1 << 16


async def get_ocr(request: Request) -> OCRService:
    return request.app.state.ocr


OCRDep = Annotated[OCRService, Depends(get_ocr)]


@ocr.post("/ocr")
async def run_ocr(request: Request, settings: SettingsDep, service: OCRDep) -> Response:
    state = request.app.state
    upload = None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        fields, upload = await _read_form(request, settings)
    else:
        fields = await read_json(
            request, settings.ocr_request_bytes, settings.max_json_items, state.body_budget
        )
    if "text/event-stream" in request.headers.get("accept", ""):
        fields["stream"] = True
    owner = owner_of(request, settings)
    work = service.answer(fields, upload, request.state.request_id, owner=owner)
    del fields, upload
    return await unless_disconnected(request, work)


async def _read_form(request: Request, settings: Settings) -> tuple[dict[str, Any], Upload | None]:
    """The form's fields and its file: written to disk as it arrives, read back once whole."""
    state = request.app.state
    async with read_multipart(
        request,
        state.upload_dir,
        max_file_bytes=settings.max_document_bytes,
        budget=state.body_budget,
        max_fields=_MAX_FORM_FIELDS,
        max_field_bytes=_MAX_FIELD_BYTES,
    ) as form:
        file = form.file
        upload = None if file is None else Upload(await file.read_bytes(), file.filename)
        return dict(form.fields), upload
