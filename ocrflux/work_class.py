"""Interactive or background work: the class of the work the current task does.

A batch line runs the same code as a synchronous request; only this context variable tells
the shared pools (upstream admission, the render, image and local OCR pools) that it is
background work, which takes only the capacity interactive requests leave free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_background: ContextVar[bool] = ContextVar("ocrflux_background_work", default=False)


def is_background() -> bool:
    """True inside `background_work()` (a batch line), False for a client's request."""
    return _background.get()


@contextlib.contextmanager
def background_work() -> Iterator[None]:
    """Everything awaited inside (and tasks created inside) is background work."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)
