"""A batch's output and error files, assembled from its committed results.

Read back from the database in line order, a chunk at a time, and written to two spooled
files: succeeded lines to the output file, failed ones to the error file, each in OpenAI's
batch output format; a line that never ran (the batch was cancelled or expired) goes to the
error file with `batch_cancelled` / `batch_expired`. The files' ids are fixed per batch, so a
finalizer that dies half-way is replaced by one that writes the same files again; the batch
turns to its final status, with its files, in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import BinaryIO

import orjson

from ocrflux.jobs.records import NOT_RUN, BatchRecord, FileRecord, FinishedLine, Status
from ocrflux.jobs.storage import FileStorage, discard
from ocrflux.jobs.store import WorkQueue

logger = logging.getLogger("ocrflux.jobs")

OUTPUT, ERRORS = "batch_output", "batch_error"


def output_file_id(batch_id: str, purpose: str) -> str:
    kind = "output" if purpose == OUTPUT else "errors"
    return f"file-{batch_id.removeprefix('batch_')}-{kind}"


def request_line_id(batch_id: str, line_no: int) -> str:
    digest = hashlib.sha256(f"{batch_id}:{line_no}".encode()).hexdigest()[:24]
    return f"batch_req_{digest}"


def output_line(batch_id: str, line: FinishedLine, outcome: Status) -> bytes:
    """One line of the output or error file (JSON with a newline); result bytes are copied
    as they were committed, not parsed again."""
    head = b'{"id":' + orjson.dumps(request_line_id(batch_id, line.line_no))
    head += b',"custom_id":' + orjson.dumps(line.custom_id)
    if line.status_code is None or line.result is None:
        code, message = NOT_RUN.get(outcome, NOT_RUN[Status.CANCELLED])
        error = orjson.dumps({"code": code, "message": message})
        return head + b',"response":null,"error":' + error + b"}\n"
    response = b'{"status_code":%d,"request_id":' % line.status_code
    response += orjson.dumps(line.request_id) + b',"body":' + line.result + b"}"
    return head + b',"response":' + response + b',"error":null}\n'


class _Spool:
    """One output file being written (in a thread), and what it holds."""

    def __init__(self, storage: FileStorage) -> None:
        self.file: BinaryIO
        self.file, self.path = storage.spool()
        self.bytes = 0
        self.lines = 0

    def write(self, lines: list[bytes]) -> None:
        for line in lines:
            self.file.write(line)
            self.bytes += len(line)
        self.lines += len(lines)


async def finalize(
    batch: BatchRecord, queue: WorkQueue, storage: FileStorage, lease: float
) -> bool:
    """Write the batch's files and close it; False when another gateway took it over."""
    outcome = batch.outcome or Status.COMPLETED
    spools = {OUTPUT: _Spool(storage), ERRORS: _Spool(storage)}
    never_ran = 0
    renewed = time.monotonic()
    try:
        pending: dict[str, list[bytes]] = {OUTPUT: [], ERRORS: []}
        async for line in queue.finished_lines(batch.id):
            if line.status_code is None:
                never_ran += 1
            target = OUTPUT if line.state == "succeeded" else ERRORS
            pending[target].append(output_line(batch.id, line, outcome))
            if len(pending[target]) >= 500:
                await asyncio.to_thread(spools[target].write, pending[target])
                pending[target] = []
            if time.monotonic() - renewed > lease / 3:
                if not await queue.renew_batch(batch.id, lease):
                    return False
                renewed = time.monotonic()
        for target, chunk in pending.items():
            await asyncio.to_thread(spools[target].write, chunk)
        records = []
        for purpose, spool in spools.items():
            await asyncio.to_thread(spool.file.close)
            if not spool.lines:
                continue
            file_id = output_file_id(batch.id, purpose)
            await storage.put(file_id, spool.path)
            records.append(
                FileRecord(
                    id=file_id,
                    owner=batch.owner,
                    purpose=purpose,
                    filename=f"{batch.id}_{'output' if purpose == OUTPUT else 'error'}.jsonl",
                    bytes=spool.bytes,
                    created_at=int(time.time()),
                    storage_key=file_id,
                    num_lines=spool.lines,
                    mimetype="application/jsonl",
                    batch_id=batch.id,
                )
            )
        closed = await queue.close_batch(batch, outcome, records, never_ran)
        if closed:
            logger.info(
                "batch %s %s: %d succeeded, %d failed", batch.id, outcome.value,
                batch.succeeded, batch.failed + never_ran,
            )  # fmt: skip
        return closed
    finally:
        for spool in spools.values():
            if not spool.file.closed:
                spool.file.close()
            await discard(spool.path)
