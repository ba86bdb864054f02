"""`/v1/files`: OpenAI's and Mistral's Files API (upload, list, get, content, delete)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import FileResponse, Response, StreamingResponse

from ocrflux.errors import APIError
from ocrflux.http.uploads import read_multipart
from ocrflux.jobs.service import JobsService, SpooledUpload
from ocrflux.jobs.wire import file_list, file_object, purposes_of
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
    state = request.app.state
    async with read_multipart(
        request,
        jobs.storage.spool_dir,
        max_file_bytes=max(settings.max_file_bytes, settings.max_document_bytes),
        budget=state.body_budget,
        max_fields=_MAX_FIELDS,
        max_field_bytes=4096,
    ) as form:
        purpose = form.fields.get("purpose")
        if not purpose:
            raise APIError(400, "purpose is required ('batch' or 'ocr')", param="purpose")
        file = form.file
        if file is None:
            raise APIError(400, "the form has no 'file' field", param="file", code="missing_file")
        lines = await asyncio.to_thread(_count_lines, str(file.path)) if purpose == "batch" else 0
        upload = SpooledUpload(
            str(file.path), file.size, file.filename or "upload", file.content_type, lines
        )
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
    sample_type: Annotated[list[str] | None, Query()] = None,
    source: Annotated[list[str] | None, Query()] = None,
    search: str | None = None,
    mimetypes: Annotated[list[str] | None, Query()] = None,
) -> Response:
    if order not in ("asc", "desc"):
        raise APIError(400, "order must be 'asc' or 'desc'", param="order")
    size = page_size or limit or 100
    if not 1 <= size <= MAX_PAGE:
        raise APIError(400, f"limit must be 1-{MAX_PAGE}", param="limit")
    offset = (page or 0) * size if page_size or page else 0
    if source is not None and not {"upload", "mistral"} & set(source):
        return json_response(file_list([], 0, False))  # e.g. "repository": none here
    records, total = await jobs.catalog.list_files(
        owner_of(request, settings),
        limit=size + 1,
        after=after,
        purpose=purpose,
        newest_first=order == "desc",
        offset=offset,
        # Mistral's filters
        purposes=None if sample_type is None else purposes_of(sample_type),
        uploaded=_uploaded(source),
        search=search,
        mimetypes=mimetypes,
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


def _uploaded(sources: list[str] | None) -> bool | None:
    """Mistral's `source` filter: "upload" is what clients sent, "mistral" what batches wrote
    (None: either)."""
    if sources is None or {"upload", "mistral"} <= set(sources):
        return None
    return "upload" in sources


def _count_lines(path: str) -> int:
    """Lines of an uploaded JSONL file (a last line without its newline counts too)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200]
