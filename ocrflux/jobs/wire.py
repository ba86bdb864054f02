"""OpenAI's and Mistral's shapes of files and batches (what `/v1/files`, `/v1/batches` and
`/v1/batch/jobs` answer), from the store's records.

One file object serves both SDKs: OpenAI's `FileObject` fields plus the ones Mistral's
`CreateFileResponse` requires (`sample_type`, `source`); each SDK ignores the other's. A batch
has one shape per API: OpenAI's `Batch` and Mistral's `BatchJob`.
"""

from __future__ import annotations

from typing import Any

from ocrflux.jobs.records import BatchRecord, FileRecord, Status

# Mistral's sample_type by purpose (its SDK requires one).
_SAMPLE_TYPES = {
    "batch": "batch_request",
    "batch_output": "batch_result",
    "batch_error": "batch_error",
}
OCR_INPUT = "ocr_input"  # the sample_type of a document uploaded for `/v1/ocr` lines


def purposes_of(sample_types: list[str]) -> list[str]:
    """The file purposes Mistral's `sample_type` filter names (unknown ones: none)."""
    wanted = set(sample_types)
    found = [purpose for purpose, kind in _SAMPLE_TYPES.items() if kind in wanted]
    return found + (["ocr"] if OCR_INPUT in wanted else [])


_MISTRAL_STATUS = {
    Status.VALIDATING: "QUEUED",
    Status.IN_PROGRESS: "RUNNING",
    Status.FINALIZING: "RUNNING",
    Status.COMPLETED: "SUCCESS",
    Status.FAILED: "FAILED",
    Status.EXPIRED: "TIMEOUT_EXCEEDED",
    Status.CANCELLED: "CANCELLED",
}
# What each Mistral status means in the store, for `GET /v1/batch/jobs?status=`: (status, was
# it cancelled: True / False / None for either), so a filter finds just the jobs shown with it.
Phase = tuple[Status, bool | None]
MISTRAL_PHASES: dict[str, list[Phase]] = {
    "QUEUED": [(Status.VALIDATING, None)],
    "RUNNING": [(Status.IN_PROGRESS, None), (Status.CANCELLING, False), (Status.FINALIZING, False)],
    "CANCELLATION_REQUESTED": [(Status.CANCELLING, True), (Status.FINALIZING, True)],
    "SUCCESS": [(Status.COMPLETED, None)],
    "FAILED": [(Status.FAILED, None)],
    "TIMEOUT_EXCEEDED": [(Status.EXPIRED, None)],
    "CANCELLED": [(Status.CANCELLED, None)],
}


def file_object(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
        # Mistral's
        "sample_type": _SAMPLE_TYPES.get(record.purpose, OCR_INPUT),
        "source": "upload" if record.batch_id is None else "mistral",
        "num_lines": record.num_lines,
        "mimetype": record.mimetype,
        "signature": None,
        "deleted": False,  # Mistral's `GetFileResponse` requires it
    }


def file_list(records: list[FileRecord], total: int, has_more: bool) -> dict[str, Any]:
    """A page of files: OpenAI's cursor page and Mistral's `total`."""
    data = [file_object(r) for r in records]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
        "total": total,
    }


def openai_status(batch: BatchRecord) -> str:
    """What OpenAI calls the state: a cancel shows `cancelling` until it is `cancelled`; an
    expiry shows `finalizing` until it is `expired`."""
    if batch.status in (Status.CANCELLING, Status.FINALIZING):
        return "cancelling" if batch.outcome is Status.CANCELLED else "finalizing"
    return batch.status.value


def openai_batch(batch: BatchRecord) -> dict[str, Any]:
    errors = {"object": "list", "data": batch.errors} if batch.errors else None
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": errors,
        "input_file_id": batch.input_files[0],
        "completion_window": batch.completion_window,
        "status": openai_status(batch),
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": batch.created_at,
        "in_progress_at": batch.in_progress_at,
        "expires_at": batch.expires_at,
        "finalizing_at": batch.finalizing_at,
        "completed_at": batch.completed_at,
        "failed_at": batch.failed_at,
        "expired_at": batch.expired_at,
        "cancelling_at": batch.cancelling_at,
        "cancelled_at": batch.cancelled_at,
        "request_counts": {
            "total": batch.total,
            "completed": batch.succeeded,
            "failed": batch.failed,
        },
        "usage": {
            "input_tokens": batch.prompt_tokens,
            "output_tokens": batch.completion_tokens,
            "total_tokens": batch.prompt_tokens + batch.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "metadata": batch.metadata,
    }


def mistral_status(batch: BatchRecord) -> str:
    if batch.status in (Status.CANCELLING, Status.FINALIZING) and batch.outcome is not None:
        return "CANCELLATION_REQUESTED" if batch.outcome is Status.CANCELLED else "RUNNING"
    return _MISTRAL_STATUS[batch.status]


def mistral_job(batch: BatchRecord) -> dict[str, Any]:
    ended = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at
    errors = [
        {"message": e.get("message", ""), "count": 1}
        | ({"message": f"line {e['line']}: {e['message']}"} if e.get("line") else {})
        for e in batch.errors or []
    ]
    return {
        "id": batch.id,
        "object": "batch",
        "input_files": batch.input_files,
        "metadata": batch.metadata,
        "endpoint": batch.endpoint,
        "model": batch.model,
        "agent_id": None,
        "output_file": batch.output_file_id,
        "error_file": batch.error_file_id,
        "errors": errors,
        "outputs": None,
        "status": mistral_status(batch),
        "created_at": batch.created_at,
        "total_requests": batch.total,
        "completed_requests": batch.done,
        "succeeded_requests": batch.succeeded,
        "failed_requests": batch.failed,
        "started_at": batch.in_progress_at,
        "completed_at": ended,
    }


def openai_batch_list(batches: list[BatchRecord], has_more: bool) -> dict[str, Any]:
    data = [openai_batch(b) for b in batches]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def mistral_job_list(batches: list[BatchRecord], total: int) -> dict[str, Any]:
    return {"object": "list", "data": [mistral_job(b) for b in batches], "total": total}
