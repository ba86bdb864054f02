"""`/v1/files`: OpenAI's and Mistral's Files API (upload, list, get, content, delete)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, Response, StreamingResponse

from ocrflux.errors import APIError
from ocrflux.jobs.service import JobsService, SpooledUpload
from ocrflux.jobs.storage import FileStorage, discard
from ocrflux.jobs.wire import file_list, file_object
from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, owner_of, require_api_key

files = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

# Small form fields besides the file: purpose, and the SDKs' expiry/visibility options.
_MAX_FIELDS = 8
MAX_PAGE = 10_000


async def get_jobs(request: Request) -> JobsService:
    return request.app.state.jobs


JobsDep = Annotated[JobsService, Depends(get_jobs)]


@files.post("/files")
async def upload_file(request: Request, settings: SettingsDep, jobs: JobsDep) -> Response:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise APIError(
            400,
            "upload the file as multipart/form-data with a 'file' field and a 'purpose'",
            param="file",
            code="invalid_multipart",
        )
    limit = max(settings.max_file_bytes, settings.max_document_bytes) + (1 << 20)
    fields, upload = await _read_form(request, jobs.storage, limit)
    purpose = fields.get("purpose")
    if not purpose:
        if upload is not None:
            await discard(upload.path)
        raise APIError(400, "purpose is required ('batch' or 'ocr')", param="purpose")
    if upload is None:
        raise APIError(400, "the form has no 'file' field", param="file", code="missing_file")
    record = await jobs.add_file(owner_of(request, settings), upload, purpose)
    return json_response(file_object(record))


@files.get("/files")
async def list_files(
    request: Request,
    settings: SettingsDep,
    jobs: JobsDep,
    purpose: str | None = None,
    limit: int | None = None,
    after: str | None = None,
    order: str = "desc",
    page: int | None = None,
    page_size: int | None = None,
) -> Response:
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'", param="order")
    size = page_size or limit or 100
    if not 1 <= size <= MAX_PAGE:
        raise APIError(400, f"limit must be 1-{MAX_PAGE}", param="limit")
    offset = (page or 0) * size if page_size or page else 0
    records, total = await jobs.catalog.list_files(
        owner_of(request, settings),
        limit=size + 1,
        after=after,
        purpose=purpose,
        newest_first=order == "desc",
        offset=offset,
    )
    return json_response(file_list(records[:size], total, len(records) > size))


@files.get("/files/{file_id}")
async def get_file(
    file_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    return json_response(file_object(await jobs.get_file(owner_of(request, settings), file_id)))


@files.get("/files/{file_id}/content")
async def file_content(
    file_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    record = await jobs.get_file(owner_of(request, settings), file_id)
    media = "application/octet-stream"  # what Mistral's SDK accepts; OpenAI's takes any
    headers = {"content-disposition": f'attachment; filename="{_safe(record.filename)}"'}
    path = jobs.storage.local_path(record.storage_key)
    if path is not None:
        return FileResponse(path, media_type=media, headers=headers)
    return StreamingResponse(
        jobs.storage.read_chunks(record.storage_key), media_type=media, headers=headers
    )


@files.delete("/files/{file_id}")
async def delete_file(
    file_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    record = await jobs.delete_file(owner_of(request, settings), file_id)
    return json_response({"id": record.id, "object": "file", "deleted": True})


async def _read_form(
    request: Request, storage: FileStorage, limit: int
) -> tuple[dict[str, str], SpooledUpload | None]:
    """The form's small fields, and its file copied into the storage's spool as it arrives
    (never whole in memory; over `limit` bytes is a 413)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(
            413, f"the upload is over the limit of {limit:,} bytes", code="file_too_large"
        )

    async def capped() -> AsyncGenerator[bytes, None]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(
                    413, f"the upload is over the limit of {limit:,} bytes", code="file_too_large"
                )
            yield chunk

    parser = MultiPartParser(
        request.headers, capped(), max_files=1, max_fields=_MAX_FIELDS, max_part_size=1 << 12
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise APIError(400, f"multipart body: {exc.message}", code="invalid_multipart") from None
    except ClientDisconnect:
        raise APIError(499, "the client left before its upload was complete") from None
    fields: dict[str, str] = {}
    upload = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "file":
                    raise APIError(
                        400, f"upload the file in a field named 'file', not {name!r}", param=name
                    )
                spool, path = storage.spool()
                size, lines = await asyncio.to_thread(_copy, value.file, spool)
                upload = SpooledUpload(
                    path, size, value.filename or "upload", value.content_type, lines
                )
            else:
                fields[name] = value
    finally:
        await form.close()
    return fields, upload


def _copy(source: BinaryIO, target: BinaryIO) -> tuple[int, int]:
    """Copy an upload to its spool; its size and its number of lines."""
    size = lines = 0
    last = b""
    with target:
        source.seek(0)
        while chunk := source.read(1 << 20):
            target.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if size and last != b"\n":
        lines += 1  # a last line without its newline
    return size, lines


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]
