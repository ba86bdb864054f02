"""The render pool: worker processes that documents take turns in, one task per worker.

A task goes to a worker only when that worker is free (the processes' own queues stay empty),
and the next free worker goes to the next document in turn (round robin), so one document's
pages never queue ahead of another's. Each worker is its own one-process executor: a worker
that dies (a page past its CPU budget, a PDF that crashes pdfium, the OOM killer) fails the
one task it ran and nothing else, and is replaced at once.

A page past its budget holds its worker until the kernel ends it (pdfium cannot be
interrupted), so turns alone would leave a document waiting that long when every worker holds
another document's page. The pool keeps one worker more than `workers` for that: a document
holds at most `workers` of them, and with several documents each holds at most its share
(at least one), so another document's pages always find a worker soon. Workers run at nice
10 (`ocrflux.documents.raster.worker_init`), a task past LONG_TASK_SECONDS at 19.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from typing import Any, TypeVar

T = TypeVar("T")
# A page takes milliseconds (a heavy scan ~0.1 s): one still drawing after this long drops to
# the lowest CPU priority, so pages that burn their whole budget yield the cores to the
# others' pages (its worker is replaced when it is done).
LONG_TASK_SECONDS = 1.0


class WorkerDied(Exception):
    """The worker running the task died (it was the task's only one)."""


class _Worker:
    """One process, one task at a time."""

    def __init__(self, initializer: Callable[[], None]) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
        )
        self.busy = False
        self.demoted = False  # it ran a long task at the lowest CPU priority
        self.started: Future[int] | None = None  # its process has started (see _warm)

    def kill(self) -> None:
        """End its process (the executor then fails its task and breaks)."""
        for process in list((self.executor._processes or {}).values()):
            with suppress(OSError, ValueError):
                process.kill()

    def demote(self) -> None:
        """Lowest CPU priority for its process: its task has been drawing a long time."""
        self.demoted = True
        for pid in list(self.executor._processes or {}):
            with suppress(OSError):  # it may be gone already
                os.setpriority(os.PRIO_PROCESS, pid, 19)


class _Flow:
    """One document's tasks: those waiting for a worker, and how many hold one."""

    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[_Worker]] = deque()
        self.running = 0


class RenderPool:
    """`workers` + 1 processes shared by documents in turns (see the module docstring)."""

    def __init__(self, workers: int, initializer: Callable[[], None]) -> None:
        self.workers = workers
        self._initializer = initializer
        self._procs = [_Worker(initializer) for _ in range(workers + 1)]
        self._flows: dict[str, _Flow] = {}
        self._turns: deque[str] = deque()  # flows with tasks waiting, next first
        self._started = False
        self._closed = False

    @property
    def flows(self) -> int:
        """Documents with tasks waiting or running (for tests and metrics)."""
        return len(self._flows)

    def pids(self) -> list[int]:
        """The worker processes' ids (for benchmarks and tests)."""
        return [pid for w in self._procs for pid in w.executor._processes or {}]

    async def run(self, flow: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker, in `flow`'s turn; WorkerDied if its worker died."""
        if self._closed:
            raise RuntimeError("the render pool is closed")
        if not self._started:
            self._started = True
            for worker in self._procs:  # every process starts now, the spare included
                _warm(worker)
        loop = asyncio.get_running_loop()
        while True:
            worker = await self._turn(flow)
            try:
                if worker.started is not None and not worker.started.done():
                    # Its process is still starting: LONG_TASK_SECONDS counts from its start.
                    await asyncio.wrap_future(worker.started)
                task = worker.executor.submit(fn, *args)
                break
            except asyncio.CancelledError:
                self._finished(flow, worker)
                raise
            except BrokenProcessPool:  # it died idle (killed from outside): the task never ran
                self._flows[flow].running -= 1
                self._replace(worker)
        demotion = loop.call_later(LONG_TASK_SECONDS, worker.demote)
        task.add_done_callback(lambda _: _soon(loop, demotion.cancel))
        task.add_done_callback(lambda _: _soon(loop, self._finished, flow, worker, task))
        try:
            return await asyncio.wrap_future(task)
        except BrokenProcessPool:
            raise WorkerDied from None
        except asyncio.CancelledError:
            if worker.demoted:  # nobody waits for this long page any more: end it now
                worker.kill()
            raise

    async def _turn(self, flow: str) -> _Worker:
        """Wait for `flow`'s turn and a free worker, which is then counted as the flow's."""
        state = self._flows.get(flow)
        if state is None:
            state = self._flows[flow] = _Flow()
        turn: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        state.waiting.append(turn)
        if flow not in self._turns:
            self._turns.append(flow)
        self._dispatch()
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # a worker was given just now
                self._finished(flow, turn.result())
            else:
                self._forget(flow, turn)
            raise

    def _finished(self, flow: str, worker: _Worker, task: Future[Any] | None = None) -> None:
        """A task let its worker go (done, failed, or its worker died)."""
        state = self._flows[flow]
        state.running -= 1
        self._drop_if_idle(flow, state)
        if worker.demoted or (task is not None and isinstance(_exception(task), BrokenProcessPool)):
            # A demoted process cannot get its priority back (unprivileged): a fresh one.
            self._replace(worker)
        else:
            worker.busy = False
        self._dispatch()

    def _forget(self, flow: str, turn: asyncio.Future[_Worker]) -> None:
        state = self._flows[flow]
        with suppress(ValueError):
            state.waiting.remove(turn)
        self._drop_if_idle(flow, state)

    def _drop_if_idle(self, flow: str, state: _Flow) -> None:
        if not state.waiting:
            with suppress(ValueError):
                self._turns.remove(flow)
            if state.running == 0:
                del self._flows[flow]

    def _replace(self, dead: _Worker) -> None:
        dead.executor.shutdown(wait=False, cancel_futures=True)
        if self._closed:
            return
        worker = _Worker(self._initializer)
        self._procs[self._procs.index(dead)] = worker
        worker.busy = True  # until it has started: a task is not kept waiting for a spawn
        loop = asyncio.get_running_loop()
        _warm(worker).add_done_callback(lambda _: loop.call_soon_threadsafe(self._ready, worker))

    def _ready(self, worker: _Worker) -> None:
        if worker in self._procs:
            worker.busy = False
            self._dispatch()

    def _dispatch(self) -> None:
        """Give free workers to waiting tasks, documents in turn, each within its share."""
        while self._turns:
            free = [w for w in self._procs if not w.busy]
            if not free:
                return
            share = min(self.workers, max(1, len(self._procs) // len(self._flows)))
            for flow in self._turns:
                if self._flows[flow].running < share:
                    break
            else:
                return  # every waiting document holds its share
            state = self._flows[flow]
            turn = state.waiting.popleft()
            self._turns.remove(flow)
            if state.waiting:
                self._turns.append(flow)  # its next task waits for its next turn
            if turn.done():  # cancelled while waiting
                self._drop_if_idle(flow, state)
                continue
            free[0].busy = True
            state.running += 1
            turn.set_result(free[0])

    async def aclose(self) -> None:
        """Stop every worker (tasks not started are cancelled)."""
        self._closed = True
        for worker in self._procs:
            if worker.busy:  # a page still drawing (a long one may take its whole budget)
                worker.kill()
            await asyncio.to_thread(worker.executor.shutdown, wait=True, cancel_futures=True)


def _warm(worker: _Worker) -> Future[int]:
    """Start the worker's process now (spawning takes a while), not at its first task; its
    start-up (imports) already below the event loop's priority."""
    started = worker.started = worker.executor.submit(os.getpid)
    for pid in list(worker.executor._processes or {}):
        with suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, max(os.getpriority(os.PRIO_PROCESS, pid), 10))
    return started


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """`fn(*args)` on the loop, from an executor's thread; nothing once the loop is closed."""
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _exception(task: Future[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()
