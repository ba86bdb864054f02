"""Worker processes end with the gateway that spawned them, however it ended.

A gateway killed with SIGKILL (or by the OOM killer) cannot shut its process pools down; its
render and OCR workers would live on with PPID 1, holding their memory. `exit_with_parent`,
called in a worker's initializer, starts a watchdog thread that ends the worker as soon as its
parent is gone. Standard library only: the workers must stay light.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import wait

# How often the parent's pid is checked too, for a parent whose pipe somebody else holds open.
CHECK_SECONDS = 1.0
EXIT_CODE = 3


def exit_with_parent() -> None:
    """In a multiprocessing child: `os._exit` as soon as the parent process dies (no-op else).

    Waits on multiprocessing's own sentinel of the parent (a pipe the parent holds open, at its
    end when the parent dies), and checks that the parent pid is still ours every
    `CHECK_SECONDS`. `os._exit`: no clean-up to run, the parent is gone and the work with it.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    threading.Thread(
        target=_watch,
        args=(parent.pid, parent.sentinel),
        name="ocrflux-parent-watch",
        daemon=True,
    ).start()


def _watch(parent_pid: int, sentinel: int) -> None:
    while not wait([sentinel], timeout=CHECK_SECONDS) and os.getppid() == parent_pid:
        pass
    os._exit(EXIT_CODE)
