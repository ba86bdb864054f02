"""The batch worker every gateway runs: claim lines, run them, commit each, finalize batches.

One loop per gateway (owned by the app's lifespan). Each tick it stops expired batches,
validates one new batch, claims lines while it has room (at most `BATCH_LINES_IN_FLIGHT`
lines at once, and only while its upstream calls are not already waiting for capacity),
renews its leases, cancels its lines of batches that stopped, and finalizes a batch whose
lines are all done. A line that finishes is committed before anything counts it; one whose
gateway dies is claimed again once its lease expires. Memory holds the lines in flight, never
a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from ocrflux.errors import APIError
from ocrflux.jobs.executor import LineExecutor, line_request_id
from ocrflux.jobs.finalize import finalize
from ocrflux.jobs.records import BatchRecord, ClaimedLine, LineResult, ValidationErrors
from ocrflux.jobs.storage import FileStorage
from ocrflux.jobs.store import Catalog, WorkQueue
from ocrflux.jobs.validate import InputScanner
from ocrflux.metrics import record_batch_census, record_batch_line
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux.jobs")

# A line claimed this many times never finished (each gateway running it died): it fails.
MAX_ATTEMPTS = 3
# Seconds between the batch census for /metrics, and between retention sweeps.
CENSUS_EVERY = 5.0
PURGE_EVERY = 600.0


class BatchWorker:
    """Runs batch lines on this gateway; `start()` in the lifespan, `aclose()` at its end."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        queue: WorkQueue,
        storage: FileStorage,
        executor: LineExecutor,
        *,
        has_room: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.queue = queue
        self.storage = storage
        self.executor = executor
        self.has_room = has_room
        self.lease = settings.batch_lease_seconds
        self.lines: dict[tuple[str, int], tuple[ClaimedLine, asyncio.Task[None]]] = {}
        self._keys: dict[str, list[str]] = {}  # running batch -> its input files' storage keys
        self._chores: dict[str, asyncio.Task[None]] = {}  # "validate" / "finalize" in progress
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._renewed = 0.0
        self._counted = 0.0
        self._purged = 0.0

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="batch-worker")

    def wake(self) -> None:
        """Look for work now (a batch was created, a line finished)."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop: lines in flight are cancelled and their leases given back, so another
        gateway (or this one, restarted) takes them at once."""
        tasks = [t for t in (self._loop, *self._chores.values()) if t is not None]
        tasks += [task for _, task in self.lines.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again next tick
                logger.exception("batch worker tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.batch_poll_interval):
                    await self._wake.wait()

    async def _tick(self) -> None:
        for batch_id in await self.queue.expire_due():
            logger.info("batch %s expired: its completion window has passed", batch_id)
        await self._heartbeat()
        self._chore("validate", self.queue.claim_validation, self._validate)
        self._chore("finalize", self.queue.claim_finalize, self._finalize)
        await self._claim()
        now = time.monotonic()
        if now - self._counted > CENSUS_EVERY:
            self._counted = now
            record_batch_census(*await self.queue.census())
        if now - self._purged > min(PURGE_EVERY, self.settings.jobs_retention_hours * 360):
            self._purged = now
            await self.purge()

    async def purge(self) -> int:
        """Delete what is older than JOBS_RETENTION_HOURS (records first, then bytes)."""
        before = int(time.time() - self.settings.jobs_retention_hours * 3600)
        keys = await self.queue.purge(before)
        for key in keys:
            await self.storage.delete(key)
        if keys:
            logger.info("retention: %d files deleted", len(keys))
        return len(keys)

    def _chore(
        self,
        name: str,
        claim: Callable[[float], Awaitable[BatchRecord | None]],
        work: Callable[[BatchRecord], Awaitable[None]],
    ) -> None:
        """At most one validation and one finalization at a time on this gateway."""
        if name in self._chores:
            return

        async def chore() -> None:
            try:
                while (batch := await claim(self.lease)) is not None:
                    await work(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("batch %s failed; another attempt follows", name)
            finally:
                del self._chores[name]

        self._chores[name] = asyncio.create_task(chore(), name=f"batch-{name}")

    # --- lines --------------------------------------------------------------------------------
    async def _claim(self) -> None:
        room = self.settings.batch_lines_in_flight - len(self.lines)
        if room <= 0 or not self.has_room():
            return
        running = await self.queue.running_batches()
        self._keys = {b.id: self._keys[b.id] for b in running if b.id in self._keys}
        for n, batch in enumerate(running):
            share = max(1, room // (len(running) - n))
            keys = await self._input_keys(batch)
            if keys is None:
                continue
            for line in await self.queue.claim_lines(batch, keys, share, self.lease):
                task = asyncio.create_task(self._run_line(line), name=f"batch-line-{line.line_no}")
                self.lines[(line.batch_id, line.line_no)] = (line, task)
                room -= 1
            if room <= 0:
                return

    async def _input_keys(self, batch: BatchRecord) -> list[str] | None:
        keys = self._keys.get(batch.id)
        if keys is None:
            found = [await self.catalog.get_file(batch.owner, f) for f in batch.input_files]
            if any(f is None for f in found):
                return None  # deleted while the batch ran: its lines fail by the lease rules
            keys = self._keys[batch.id] = [f.storage_key for f in found if f is not None]
        return keys

    async def _run_line(self, line: ClaimedLine) -> None:
        started = time.monotonic()
        try:
            if line.attempts > MAX_ATTEMPTS:
                result = _abandoned(line)
            else:
                result = await self.executor.run(line)
            if await self.queue.commit(line, result):
                record_batch_line(
                    "succeeded" if result.ok else "failed", time.monotonic() - started
                )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.release(line))
            raise
        except Exception:  # the commit failed (database away): the lease will expire
            logger.exception("batch line %s:%d could not be committed", line.batch_id, line.line_no)
        finally:
            self.lines.pop((line.batch_id, line.line_no), None)
            self._wake.set()

    async def _heartbeat(self) -> None:
        """Cancel our lines of batches that stopped (every tick: a cancel takes effect within
        BATCH_POLL_INTERVAL); renew our leases (every third of a lease)."""
        stopped = await self.queue.stopped({batch_id for batch_id, _ in self.lines})
        for line, task in list(self.lines.values()):
            if line.batch_id in stopped:
                task.cancel()
        if self.lines and time.monotonic() - self._renewed > self.lease / 3:
            self._renewed = time.monotonic()
            await self.queue.renew_lines(self.lease)

    # --- validation and finalizing ------------------------------------------------------------
    async def _validate(self, batch: BatchRecord) -> None:
        errors = ValidationErrors()
        inputs = [await self.catalog.get_file(batch.owner, f) for f in batch.input_files]
        missing = [f for f, record in zip(batch.input_files, inputs, strict=True) if not record]
        if missing:
            errors.add("file_not_found", f"input file {missing[0]} does not exist")
            await self.queue.refuse(batch.id, errors.summary())
            return
        settings = self.settings
        scanner = InputScanner(
            self.storage,
            [f.storage_key for f in inputs if f is not None],
            endpoint=batch.endpoint,
            strict=batch.api == "openai",
            max_lines=settings.batch_max_lines,
            max_line_bytes=settings.max_line_bytes,
            errors=errors,
        )
        await self.queue.clear_lines(batch.id)
        chunks = scanner.chunks()
        renewed = time.monotonic()
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            custom_ids = {spec.line_no: spec.custom_id for spec in chunk}
            for line_no in await self.queue.add_lines(batch.id, chunk):
                scanner.add(
                    "duplicate_custom_id",
                    f"custom_id {custom_ids[line_no]!r} is used by an earlier line",
                    scanner.where[line_no],
                    param="custom_id",
                )
            if time.monotonic() - renewed > self.lease / 3:
                if not await self.queue.renew_batch(batch.id, self.lease):
                    return  # taken over by another gateway
                renewed = time.monotonic()
        if not scanner.count and not errors.count:
            errors.add("empty_file", "the input file holds no requests")
        if errors.count:
            await self.queue.refuse(batch.id, errors.summary())
            logger.info("batch %s failed validation: %d errors", batch.id, errors.count)
        elif await self.queue.validated(batch.id, scanner.count, self.lease):
            logger.info("batch %s validated: %d requests", batch.id, scanner.count)
            self._wake.set()
        else:  # cancelled (or expired) while we read it
            await self.queue.clear_lines(batch.id)
            await self.queue.release_batch(batch.id)

    async def _finalize(self, batch: BatchRecord) -> None:
        await finalize(batch, self.queue, self.storage, self.lease)


def _abandoned(line: ClaimedLine) -> LineResult:
    error = APIError(
        500,
        f"the request was started {MAX_ATTEMPTS} times and never finished (the gateway "
        "running it stopped each time)",
        code="abandoned",
    )
    return LineResult(500, orjson.dumps(error.body()), line_request_id(line.batch_id, line.line_no))
