"""`LocalOCRPool`: the local engine in worker processes, awaited from asyncio.

Workers are *spawned* (a fresh interpreter: no copy of the gateway's event loop, sockets or
threads) and load the recogniser once, in the initializer. At most `workers` pages are handed
to the processes at a time; the others wait in asyncio, taking turns per request
(`ocrflux.engines.local.turns`), so a caller that gives up (a cancelled task, a closed
connection) takes its page out of the queue instead of leaving it to run, and a request of one
page waits for one page, not for a document's queue. A page already in a worker runs to the
end: a process cannot be interrupted mid-inference. A worker whose memory passed the ceiling
after a page is replaced by a fresh one (its next page waits for the models to load).

This module imports nothing heavy, so importing it needs no `cpu` extra; the workers import
the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from ocrflux.engines.local.errors import LocalOCRError, WorkerCrashed
from ocrflux.engines.local.result import LocalPage
from ocrflux.engines.local.turns import Flow, Turns
from ocrflux.observability import request_id_var
from ocrflux.work_class import is_background
from ocrflux.worker_lifetime import exit_with_parent

if TYPE_CHECKING:
    from ocrflux.engines.local.reader import LineReader
    from ocrflux.engines.local.tesseract import Tesseract

_recogniser: LineReader | None = None  # one per worker process
_tesseract: Tesseract | None = None  # the installed Tesseract, when allowed and found


def _init_worker(threads: int, tesseract: bool = True, recogniser: str = "rapidocr") -> None:
    exit_with_parent()
    # Before numpy/OpenCV/ONNX Runtime are imported, so their thread pools see it; the
    # Tesseract subprocesses inherit it (OpenMP's OMP_THREAD_LIMIT caps theirs).
    for name in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import cv2

    from ocrflux.engines.local.ocr import Recogniser
    from ocrflux.engines.local.tesseract import Tesseract, TesseractLines

    cv2.setNumThreads(threads)
    global _recogniser, _tesseract
    found = Tesseract.find()
    _tesseract = found if tesseract else None
    if recogniser == "tesseract":
        if found is None:
            raise LocalOCRError("LOCAL_RECOGNISER=tesseract, but no tesseract binary is installed")
        _recogniser = TesseractLines(found)
    else:
        _recogniser = Recogniser(threads)


def _read(image: bytes) -> LocalPage:
    from ocrflux.engines.local.reader import read_page

    if _recogniser is None:  # pragma: no cover - the initializer always runs first
        raise LocalOCRError("worker started without a recogniser")
    try:
        return read_page(image, _recogniser, _tesseract)
    except LocalOCRError:
        raise
    except Exception as exc:  # OpenCV/ONNX errors may not pickle back; their text does
        raise LocalOCRError(f"local OCR failed: {type(exc).__name__}: {exc}") from None


def _ready() -> int:
    return os.getpid()


def _call(fn: Callable[..., object], args: tuple[object, ...]) -> tuple[object, int]:
    """`fn(*args)` in the worker, and the worker's resident memory after it (bytes)."""
    value = fn(*args)
    return value, _resident_bytes()


def _resident_bytes() -> int:
    """Resident memory now, after handing freed heap back to the system (glibc keeps it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak instead
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# A page whose worker died is asked once more, on a fresh worker; a second death is its own.
ATTEMPTS = 2
CRASHED = "a local OCR worker process died while reading a page"


class _Worker:
    """One worker process behind a one-process executor: its death fails only its own page,
    and a fresh process takes its place."""

    def __init__(self, initargs: tuple[int, bool, str]) -> None:
        self.initargs = initargs
        self.executor = self._spawn()

    def _spawn(self) -> ProcessPoolExecutor:
        # The process itself starts on the first task, with its initializer loading the models.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=self.initargs,
        )

    def submit(self, fn: object, args: tuple[object, ...]) -> Future[tuple[object, int]]:
        try:
            return self.executor.submit(_call, fn, args)  # type: ignore[arg-type]
        except BrokenProcessPool:  # it died while idle (killed, the OOM killer): replace it
            self.replace()
            return self.executor.submit(_call, fn, args)  # type: ignore[arg-type]

    def replace(self, *, warm: bool = False) -> None:
        """A fresh process from now on; the old one is told to exit (if it still runs).

        `warm`: start the new process and load its models now, not on its next page."""
        old, self.executor = self.executor, self._spawn()
        old.shutdown(wait=False, cancel_futures=True)
        if warm:
            self.executor.submit(_ready)


class LocalOCRPool:
    """A bounded pool of OCR worker processes: `await pool.read(png_or_jpeg_bytes)`.

    Each worker is its own one-process executor, so a worker that dies (the OOM killer, a
    crash in native code) fails the page it was reading and no other: that page is asked
    again once on a fresh worker, then fails with `WorkerCrashed`. `max_rss_bytes` (0: none)
    is the memory ceiling of a worker: one past it after a page is recycled.
    """

    def __init__(
        self,
        workers: int,
        threads_per_worker: int,
        max_rss_bytes: int = 0,
        *,
        tesseract: bool = True,
        recogniser: str = "rapidocr",
    ) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise ValueError("workers and threads_per_worker must be >= 1")
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.max_rss_bytes = max_rss_bytes
        self.tesseract = tesseract  # pages in other scripts may go to Tesseract, if installed
        self.recogniser = recogniser  # who reads the lines: rapidocr or tesseract
        self.submitted = 0  # pages handed to a worker process, ever
        self.in_flight = 0  # pages in a worker process now
        self.recycled = 0  # workers replaced for passing the memory ceiling, ever
        initargs = (threads_per_worker, tesseract, recogniser)
        self._all = [_Worker(initargs) for _ in range(workers)]
        self._idle = list(self._all)
        self._turns: Turns | None = None  # made on the loop that uses it
        self._closed = False

    @property
    def turns(self) -> Turns:
        if self._turns is None:
            self._turns = Turns(self.workers)
        return self._turns

    def _give(self, worker: _Worker, flow: Flow, future: Future[tuple[object, int]]) -> None:
        """`worker` is free again: replaced first if its process died or grew past the ceiling."""
        if not future.cancelled():
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                worker.replace()
            elif error is None and self.max_rss_bytes and future.result()[1] > self.max_rss_bytes:
                self.recycled += 1
                worker.replace(warm=True)
        self._idle.append(worker)
        self.turns.release(flow)

    def _submit(
        self, worker: _Worker, fn: object, args: tuple[object, ...]
    ) -> Future[tuple[object, int]]:
        loop = asyncio.get_running_loop()
        future = worker.submit(fn, args)
        self.submitted += 1
        self.in_flight += 1

        def finished(_: object) -> None:
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
        flow = await self.turns.acquire(request_id_var.get(), is_background())
        worker = self._idle.pop()
        for attempt in range(1, ATTEMPTS + 1):
            future = self._submit(worker, fn, args)
            try:
                value, _ = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                if future.cancel() or future.done():
                    self._give(worker, flow, future)
                else:  # a page already in a worker runs to the end; the worker is free then
                    self._give_when_done(worker, flow, future)
                raise
            except BrokenProcessPool:
                if attempt < ATTEMPTS:
                    worker.replace()
                    continue
                self._give(worker, flow, future)
                raise WorkerCrashed(CRASHED) from None
            except BaseException:
                self._give(worker, flow, future)
                raise
            self._give(worker, flow, future)
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    def _give_when_done(
        self, worker: _Worker, flow: Flow, future: Future[tuple[object, int]]
    ) -> None:
        loop = asyncio.get_running_loop()

        def finished(_: object) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._give, worker, flow, future)

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
