"""`POST /v1/ocr`: Mistral's OCR API, as JSON or a multipart upload (read, validate, delegate)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from ocrflux.documents.service import OCRService, Upload
from ocrflux.errors import APIError
from ocrflux.http.disconnect import unless_disconnected
from ocrflux.routes.common import (
    SettingsDep,
    owner_of,
    read_body,
    read_json,
    require_api_key,
)

ocr = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

# Form fields that are not the file; the rest of a form is refused by name like JSON extras.
_MAX_FORM_FIELDS = 32


async def get_ocr(request: Request) -> OCRService:
    return request.app.state.ocr


OCRDep = Annotated[OCRService, Depends(get_ocr)]


@ocr.post("/ocr")
async def run_ocr(request: Request, settings: SettingsDep, service: OCRDep) -> Response:
    limit = settings.ocr_request_bytes
    upload = None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        fields, upload = await _parse_form(request, await read_body(request, limit))
    else:
        fields = await read_json(request, limit, settings.max_json_items)
    if "text/event-stream" in request.headers.get("accept", ""):
        fields["stream"] = True
    owner = owner_of(request, settings)
    work = service.answer(fields, upload, request.state.request_id, owner=owner)
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
