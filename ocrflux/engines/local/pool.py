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

if TYPE_CHECKING:
    from ocrflux.engines.local.reader import LineReader
    from ocrflux.engines.local.tesseract import Tesseract

_recogniser: LineReader | None = None  # one per worker process
_tesseract: Tesseract | None = None  # the installed Tesseract, when allowed and found


def _init_worker(threads: int, tesseract: bool = True, recogniser: str = "rapidocr") -> None:
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


class LocalOCRPool:
    """A bounded pool of OCR worker processes: `await pool.read(png_or_jpeg_bytes)`."""

    def __init__(
        self,
        workers: int,
        threads_per_worker: int,
        *,
        tesseract: bool = True,
        recogniser: str = "rapidocr",
    ) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise ValueError("workers and threads_per_worker must be >= 1")
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.tesseract = tesseract  # pages in other scripts may go to Tesseract, if installed
        self.recogniser = recogniser  # who reads the lines: rapidocr or tesseract
        self.submitted = 0  # pages handed to a worker process, ever
        self.in_flight = 0  # pages in a worker process now
        self._executor = self._new_executor()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads_per_worker, self.tesseract, self.recogniser),
        )

    async def _run(self, fn: object, *args: object) -> object:
        if self._closed:
            raise RuntimeError("the local OCR pool is closed")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            future: Future[object] = executor.submit(fn, *args)  # type: ignore[arg-type]
        except BaseException:
            slots.release()
            raise
        self.submitted += 1
        self.in_flight += 1

        def finished(_: Future[object]) -> None:
            def release() -> None:
                self.in_flight -= 1
                slots.release()

            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(release)

        future.add_done_callback(finished)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BrokenProcessPool:
            if self._executor is executor and not self._closed:
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            raise WorkerCrashed("a local OCR worker process died while reading a page") from None

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
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
