"""Stop a request's work when its client goes away before the answer starts.

uvicorn does not cancel a handler whose client disconnected: an abandoned request kept
normalising its images (64 s of CPU for two of them, while a photo from a client still
waiting took 32 s instead of 0.16 s) and kept its pages' vLLM calls running. Once the body is
read, the only message left for the request is `http.disconnect`: waiting for it beside the
work tells when nobody is listening any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

# nginx's name for "the client closed the connection before the answer" (never sent: logged).
CLIENT_CLOSED = 499


async def until_disconnected(receive: Receive) -> None:
    """Return when the client has gone (call only after the request body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[Response]) -> Response:
    """The response `work` produces; if the client leaves first, `work` is cancelled (its
    queued image work and upstream calls with it) and the answer is a 499 nobody reads.

    Once `work` returns a response, watching stops: a streaming response watches by itself.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnected(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled from outside (the request's deadline)
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # let its `finally` blocks run (they close upstream connections)
    if not task.cancelled():
        task.exception()  # retrieved: whatever it was, nobody is there to hear it
    return Response(status_code=CLIENT_CLOSED)
