"""OpenAI's Batch API (`/v1/batches`) and Mistral's batch jobs (`/v1/batch/jobs`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from ocrflux.errors import APIError
from ocrflux.jobs.service import check_metadata, completion_hours
from ocrflux.jobs.wire import (
    MISTRAL_PHASES,
    Phase,
    mistral_job,
    mistral_job_list,
    openai_batch,
    openai_batch_list,
)
from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, owner_of, read_json, require_api_key
from ocrflux.routes.files import JobsDep

batches = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

# Mistral's default `timeout_hours`; and the longest window either API may ask for.
MISTRAL_HOURS = 24
MAX_HOURS = 7 * 24


def _hours(hours: int, param: str) -> int:
    if not 1 <= hours <= MAX_HOURS:
        raise APIError(400, f"{param} must be 1-{MAX_HOURS} hours", param=param)
    return hours


def _string(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise APIError(400, f"{name} must be a non-empty string", param=name)
    return value


# --- OpenAI ---------------------------------------------------------------------------------
@batches.post("/batches")
async def create_batch(request: Request, settings: SettingsDep, jobs: JobsDep) -> Response:
    body = await read_json(
        request, settings.max_request_bytes, settings.max_json_items, request.app.state.body_budget
    )
    window = body.get("completion_window", "24h")
    record = await jobs.create_batch(
        owner_of(request, settings),
        api="openai",
        endpoint=_string(body, "endpoint") or "",
        input_files=[_string(body, "input_file_id") or ""],
        hours=_hours(completion_hours(window), "completion_window"),
        window=window,
        metadata=check_metadata(body.get("metadata")),
    )
    return json_response(openai_batch(record))


@batches.get("/batches")
async def list_batches(
    request: Request,
    settings: SettingsDep,
    jobs: JobsDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    records, _ = await jobs.catalog.list_batches(
        owner_of(request, settings), limit=limit + 1, after=after
    )
    return json_response(openai_batch_list(records[:limit], len(records) > limit))


@batches.get("/batches/{batch_id}")
async def get_batch(
    batch_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    return json_response(openai_batch(await jobs.get_batch(owner_of(request, settings), batch_id)))


@batches.post("/batches/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    return json_response(openai_batch(await jobs.cancel(owner_of(request, settings), batch_id)))


# --- Mistral --------------------------------------------------------------------------------
@batches.post("/batch/jobs")
async def create_job(request: Request, settings: SettingsDep, jobs: JobsDep) -> Response:
    body = await read_json(
        request, settings.max_request_bytes, settings.max_json_items, request.app.state.body_budget
    )
    if body.get("requests"):
        raise APIError(
            400,
            "inline requests are not supported: upload them as a JSONL file (POST /v1/files, "
            "purpose 'batch') and name it in input_files",
            param="requests",
            code="unsupported",
        )
    if body.get("agent_id"):
        raise APIError(400, "agents are not supported", param="agent_id", code="unsupported")
    inputs = body.get("input_files")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(f, str) for f in inputs):
        raise APIError(400, "input_files must be a list of file ids", param="input_files")
    hours = body.get("timeout_hours", MISTRAL_HOURS)
    if not isinstance(hours, int) or isinstance(hours, bool):
        raise APIError(400, "timeout_hours must be a whole number of hours", param="timeout_hours")
    record = await jobs.create_batch(
        owner_of(request, settings),
        api="mistral",
        endpoint=_string(body, "endpoint") or "",
        input_files=list(dict.fromkeys(inputs)),
        hours=_hours(hours, "timeout_hours"),
        window=f"{hours}h",
        metadata=check_metadata(body.get("metadata")),
        model=_string(body, "model", required=False),
    )
    return json_response(mistral_job(record))


@batches.get("/batch/jobs")
async def list_jobs(
    request: Request,
    settings: SettingsDep,
    jobs: JobsDep,
    page: Annotated[int, Query(ge=0)] = 0,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: Annotated[list[str] | None, Query()] = None,
    created_after: datetime | None = None,
    created_by_me: bool = False,  # every job a key sees is its own
    model: str | None = None,
    agent_id: str | None = None,
    order_by: str = "-created",
    metadata: str | None = None,
) -> Response:
    if order_by not in ("created", "-created"):
        raise APIError(400, "order_by must be 'created' or '-created'", param="order_by")
    pairs = _metadata_filter(request, metadata)
    phases: list[Phase] = []
    for name in status or []:
        if name not in MISTRAL_PHASES:
            raise APIError(400, f"unknown status {name!r}", param="status")
        phases += MISTRAL_PHASES[name]
    if agent_id:  # no job here runs an agent
        return json_response(mistral_job_list([], 0))
    records, total = await jobs.catalog.list_batches(
        owner_of(request, settings),
        limit=page_size,
        offset=page * page_size,
        phases=phases,
        created_after=_epoch(created_after) if created_after else None,
        model=model,
        metadata=pairs,
        oldest_first=order_by == "created",
    )
    return json_response(mistral_job_list(records, total))


def _epoch(moment: datetime) -> int:
    """A time as seconds since the epoch; one without a time zone is UTC (not the server's)."""
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


# The query parameters `GET /v1/batch/jobs` knows; Mistral's SDK sends a `metadata` filter
# exploded, each pair a parameter of its own, so any other parameter is a metadata pair.
_JOB_FILTERS = {
    "page", "page_size", "status", "created_after", "created_by_me", "model", "agent_id",
    "order_by", "metadata",
}  # fmt: skip


def _metadata_filter(request: Request, metadata: str | None) -> dict[str, str]:
    """The metadata pairs a job must hold: exploded parameters, or `metadata` as JSON."""
    pairs = {k: v for k, v in request.query_params.items() if k not in _JOB_FILTERS}
    if metadata is not None:
        try:
            given = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            given = None
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise APIError(400, "metadata must be a JSON object of strings", param="metadata")
        pairs |= given
    return pairs


@batches.get("/batch/jobs/{job_id}")
async def get_job(job_id: str, request: Request, settings: SettingsDep, jobs: JobsDep) -> Response:
    return json_response(mistral_job(await jobs.get_batch(owner_of(request, settings), job_id)))


@batches.post("/batch/jobs/{job_id}/cancel")
async def cancel_job(
    job_id: str, request: Request, settings: SettingsDep, jobs: JobsDep
) -> Response:
    return json_response(mistral_job(await jobs.cancel(owner_of(request, settings), job_id)))
