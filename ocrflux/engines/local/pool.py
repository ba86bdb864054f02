"""`LocalOCRPool`: the local engine in worker processes, awaited from asyncio.

Workers are *spawned* (a fresh interpreter: no copy of the gateway's event loop, sockets or
threads) and load the recogniser once, in the initializer. At most `workers` pages are handed
to the processes at a time; the others wait in asyncio, so a caller that gives up (a cancelled
task, a closed connection) takes its page out of the queue instead of leaving it to run.
A page already in a worker runs to the end: a process cannot be interrupted mid-inference.

This module imports nothing heavy, so importing it needs no `cpu` extra; the workers import
the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from ocrflux.engines.local.errors import LocalOCRError, WorkerCrashed
from ocrflux.engines.local.result import LocalPage
from ocrflux.worker_lifetime import exit_with_parent

if TYPE_CHECKING:
    from ocrflux.engines.local.ocr import Recogniser

_recogniser: Recogniser | None = None  # one per worker process


def _init_worker(threads: int) -> None:
    exit_with_parent()
    # Before numpy/OpenCV/ONNX Runtime are imported, so their thread pools see it.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import cv2

    from ocrflux.engines.local.ocr import Recogniser

    cv2.setNumThreads(threads)
    global _recogniser
    _recogniser = Recogniser(threads)


def _read(image: bytes) -> LocalPage:
    from ocrflux.engines.local.reader import read_page

    if _recogniser is None:  # pragma: no cover - the initializer always runs first
        raise LocalOCRError("worker started without a recogniser")
    try:
        return read_page(image, _recogniser)
    except LocalOCRError:
        raise
    except Exception as exc:  # OpenCV/ONNX errors may not pickle back; their text does
        raise LocalOCRError(f"local OCR failed: {type(exc).__name__}: {exc}") from None


def _ready() -> int:
    return os.getpid()


# A page whose worker died is asked once more, on a fresh worker; a second death is its own.
ATTEMPTS = 2


class _Worker:
    """One worker process behind a one-process executor: its death fails only its own page,
    and a fresh process takes its place."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.executor = self._spawn()

    def _spawn(self) -> ProcessPoolExecutor:
        # The process itself starts on the first task, with its initializer loading the models.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads,),
        )

    def submit(self, fn: object, args: tuple[object, ...]) -> Future[object]:
        try:
            return self.executor.submit(fn, *args)  # type: ignore[arg-type]
        except BrokenProcessPool:  # it died while idle (killed, the OOM killer): replace it
            self.replace()
            return self.executor.submit(fn, *args)  # type: ignore[arg-type]

    def replace(self) -> None:
        """A fresh process from now on; the old one is told to exit (if it still runs)."""
        old, self.executor = self.executor, self._spawn()
        old.shutdown(wait=False, cancel_futures=True)


class LocalOCRPool:
    """A bounded pool of OCR worker processes: `await pool.read(png_or_jpeg_bytes)`.

    Each worker is its own one-process executor, so a worker that dies (the OOM killer, a
    crash in native code) fails the page it was reading and no other: that page is asked
    again once on a fresh worker, then fails with `WorkerCrashed`.
    """

    def __init__(self, workers: int, threads_per_worker: int) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise ValueError("workers and threads_per_worker must be >= 1")
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.submitted = 0  # pages handed to a worker process, ever
        self.in_flight = 0  # pages in a worker process now
        self._all = [_Worker(threads_per_worker) for _ in range(workers)]
        self._idle = list(self._all)
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def _take(self) -> _Worker:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        await self._slots.acquire()
        return self._idle.pop()

    def _give(self, worker: _Worker, future: Future[object] | None = None) -> None:
        """`worker` is free again (replaced first if `future` says its process died)."""
        if future is not None and _died(future):
            worker.replace()
        self._idle.append(worker)
        assert self._slots is not None
        self._slots.release()

    def _submit(self, worker: _Worker, fn: object, args: tuple[object, ...]) -> Future[object]:
        loop = asyncio.get_running_loop()
        future = worker.submit(fn, args)
        self.submitted += 1
        self.in_flight += 1

        def finished(_: Future[object]) -> None:
            def count() -> None:
                self.in_flight -= 1

            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(count)

        future.add_done_callback(finished)
        return future

    async def _run(self, fn: object, *args: object) -> object:
        if self._closed:
            raise RuntimeError("the local OCR pool is closed")
        worker: _Worker | None = await self._take()
        try:
            for _ in range(ATTEMPTS):
                assert worker is not None
                future = self._submit(worker, fn, args)
                try:
                    return await asyncio.wrap_future(future)
                except asyncio.CancelledError:
                    if not future.cancel() and not future.done():
                        # A page already in a worker runs to the end; the worker is free then.
                        self._give_when_done(worker, future)
                        worker = None
                    raise
                except BrokenProcessPool:
                    worker.replace()
            raise WorkerCrashed("a local OCR worker process died while reading a page")
        finally:
            if worker is not None:
                self._give(worker)

    def _give_when_done(self, worker: _Worker, future: Future[object]) -> None:
        loop = asyncio.get_running_loop()

        def finished(_: Future[object]) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._give, worker, future)

        future.add_done_callback(finished)

    async def start(self) -> None:
        """Start every worker and load its models now rather than on the first pages."""
        await asyncio.gather(*(self._run(_ready) for _ in range(self.workers)))

    async def read(self, image_png_or_jpeg: bytes) -> LocalPage:
        """Read one page image (encoded bytes) in a worker process."""
        page = await self._run(_read, bytes(image_png_or_jpeg))
        assert isinstance(page, LocalPage)
        return page

    async def aclose(self) -> None:
        """Stop taking pages, drop the queued ones, wait for the workers to exit."""
        self._closed = True

        def shutdown() -> None:
            for worker in self._all:
                worker.executor.shutdown(wait=True, cancel_futures=True)

        await asyncio.to_thread(shutdown)


def _died(future: Future[object]) -> bool:
    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)
