"""What the files and batches routes call: checks, ids, records, limits (no HTTP, no SQL).

Every call names an owner (see `ocrflux.routes.common.owner_of`): another owner's id is a
404, the same as an id that never existed.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ocrflux.errors import APIError
from ocrflux.jobs.executor import ENDPOINTS
from ocrflux.jobs.records import ACTIVE, BatchRecord, FileRecord
from ocrflux.jobs.storage import FileStorage, discard
from ocrflux.jobs.store import Catalog
from ocrflux.settings import Settings

PURPOSES = ("batch", "ocr")
_WINDOW = re.compile(r"([1-9][0-9]{0,3})h")
MAX_METADATA = 16


@dataclass(frozen=True)
class SpooledUpload:
    """An uploaded file already on disk (in the storage's spool), not yet a file."""

    path: str
    size: int
    filename: str
    content_type: str | None
    lines: int  # newlines seen (JSONL requests)


def new_id(prefix: str) -> str:
    """`prefix` + milliseconds + randomness: ids sort in creation order (the listings'
    cursor), across gateways too."""
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def not_found(kind: str, ident: str) -> APIError:
    return APIError(404, f"No such {kind}: '{ident}'", param="id", code="not_found")


class JobsService:
    """Files and batches for the routes; `worker` (if this gateway runs one) is woken on
    new batches."""

    def __init__(
        self, settings: Settings, catalog: Catalog, storage: FileStorage, wake: Any = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.storage = storage
        self.wake = wake or (lambda: None)

    # --- files --------------------------------------------------------------------------------
    async def add_file(self, owner: str, upload: SpooledUpload, purpose: str) -> FileRecord:
        """Keep an upload as a file (the spooled bytes become the file's, or are removed)."""
        try:
            if purpose not in PURPOSES:
                raise APIError(
                    400,
                    f"purpose must be one of {', '.join(PURPOSES)} (batch: JSONL requests; "
                    "ocr: a document a batch line names by file_id)",
                    param="purpose",
                    code="invalid_value",
                )
            limit = (
                self.settings.max_document_bytes
                if purpose == "ocr"
                else self.settings.max_file_bytes
            )
            if upload.size > limit:
                raise APIError(
                    413,
                    f"the file is {upload.size:,} bytes, the limit for purpose {purpose!r} is "
                    f"{limit:,}",
                    param="file",
                    code="file_too_large",
                )
            if upload.size == 0:
                raise APIError(400, "the file is empty", param="file", code="empty_file")
            file_id = new_id("file-")
            await self.storage.put(file_id, upload.path)
        finally:
            await discard(upload.path)  # put() moved it, or it is refused
        record = FileRecord(
            id=file_id,
            owner=owner,
            purpose=purpose,
            filename=upload.filename[:512] or "upload",
            bytes=upload.size,
            created_at=int(time.time()),
            storage_key=file_id,
            num_lines=upload.lines if purpose == "batch" else None,
            mimetype=upload.content_type,
        )
        await self.catalog.add_file(record)
        return record

    async def get_file(self, owner: str, file_id: str) -> FileRecord:
        record = await self.catalog.get_file(owner, file_id)
        if record is None:
            raise not_found("file", file_id)
        return record

    async def delete_file(self, owner: str, file_id: str) -> FileRecord:
        record = await self.get_file(owner, file_id)
        active, _ = await self.catalog.list_batches(owner, limit=1000, statuses=ACTIVE)
        using = [b.id for b in active if file_id in b.input_files]
        if using:
            raise APIError(
                409,
                f"file {file_id} is the input of batch {using[0]}, which has not ended: "
                "cancel it first",
                param="file_id",
                code="file_in_use",
            )
        deleted = await self.catalog.delete_file(owner, file_id)
        if deleted is not None:
            await self.storage.delete(deleted.storage_key)
        return record

    async def read_document(self, owner: str, file_id: str, max_bytes: int) -> bytes:
        """An uploaded document's bytes for `/v1/ocr` (`document.type: file`)."""
        record = await self.catalog.get_file(owner, file_id)
        if record is None:
            raise APIError(
                404,
                f"No such file: '{file_id}' (upload it to POST /v1/files with purpose 'ocr')",
                param="document.file_id",
                code="not_found",
            )
        if record.bytes > max_bytes:
            raise APIError(
                413,
                f"file {file_id} is {record.bytes:,} bytes, the document limit is {max_bytes:,}",
                param="document.file_id",
                code="document_too_large",
            )
        return await self.storage.read_range(record.storage_key, 0, record.bytes)

    # --- batches ------------------------------------------------------------------------------
    async def create_batch(
        self,
        owner: str,
        *,
        api: str,
        endpoint: str,
        input_files: list[str],
        hours: int,
        window: str,
        metadata: dict[str, Any] | None,
        model: str | None = None,
    ) -> BatchRecord:
        if endpoint not in ENDPOINTS:
            raise APIError(
                400,
                f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}",
                param="endpoint",
                code="invalid_value",
            )
        param = "input_file_id" if api == "openai" else "input_files"
        for file_id in input_files:
            found = await self.catalog.get_file(owner, file_id)
            if found is None:
                raise not_found("file", file_id)
            if found.purpose != "batch":
                raise APIError(
                    400,
                    f"file {file_id} has purpose {found.purpose!r}; a batch's input file "
                    "needs purpose 'batch'",
                    param=param,
                    code="invalid_value",
                )
        if await self.catalog.active_batches(owner) >= self.settings.max_active_batches:
            limit = self.settings.max_active_batches
            raise APIError(
                429,
                f"{limit} batches of this key have not ended yet (MAX_ACTIVE_BATCHES): wait "
                "for one to end or cancel one",
                code="batch_limit_exceeded",
                type="rate_limit_error",
                headers={"Retry-After": "60"},
            )
        now = int(time.time())
        record = BatchRecord(
            id=new_id("batch_"),
            owner=owner,
            api=api,
            endpoint=endpoint,
            input_files=input_files,
            completion_window=window,
            created_at=now,
            expires_at=now + hours * 3600,
            model=model,
            metadata=metadata,
        )
        await self.catalog.add_batch(record)
        self.wake()
        return record

    async def get_batch(self, owner: str, batch_id: str) -> BatchRecord:
        record = await self.catalog.get_batch(owner, batch_id)
        if record is None:
            raise not_found("batch", batch_id)
        return record

    async def cancel(self, owner: str, batch_id: str) -> BatchRecord:
        record = await self.catalog.cancel(owner, batch_id)
        if record is None:
            raise not_found("batch", batch_id)
        self.wake()
        return record


def completion_hours(window: object) -> int:
    """OpenAI's `completion_window` ("24h") in hours; 400 for anything else."""
    found = _WINDOW.fullmatch(window) if isinstance(window, str) else None
    if found is None:
        raise APIError(
            400,
            "completion_window must be a number of hours such as '24h'",
            param="completion_window",
            code="invalid_value",
        )
    return int(found.group(1))


def check_metadata(metadata: object, param: str = "metadata") -> dict[str, Any] | None:
    """OpenAI's metadata rules: at most 16 string pairs, keys up to 64, values up to 512."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA:
        raise APIError(
            400, f"{param} must be an object of at most {MAX_METADATA} pairs", param=param
        )
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise APIError(
                400,
                f"{param}: keys are strings of up to 64 characters, values strings of up to 512",
                param=f"{param}.{key[:64]}",
                code="invalid_value",
            )
    return metadata
