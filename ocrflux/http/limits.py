"""uvicorn's httptools protocol, with a size limit on request heads and deadlines on heads and
bodies.

uvicorn's httptools protocol accepts request heads of any size (40 MB were taken; 8 such
connections took the process from 57 to 425 MB) and times nothing out before a request is
complete: a client trickling its head or body a byte at a time holds its connection forever.
Here a head larger than MAX_REQUEST_HEADER_BYTES is a 431, and a head not complete within
REQUEST_HEADER_TIMEOUT (from the connection, or the request's first byte on a kept-alive one)
or a body not complete within REQUEST_BODY_TIMEOUT of its head is a 408; both close the
connection. A reverse proxy in front (for TLS, say) may be stricter still.

Closing a socket whose client is still sending makes the kernel answer with a reset, which
can destroy the refusal in the client's receive buffer before it reads it (a 40 KB head got
a reset instead of its 431 under load). So a refused connection closes the lingering way:
the answer is written and the write side shut (FIN), what the client still sends is read
and dropped, and the socket is closed once the client closes, after LINGER_SECONDS, or past
LINGER_BYTES, whichever comes first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ocrflux.errors import APIError
from ocrflux.settings import Settings

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
# How long, and how much, a refused client may go on sending before its socket is closed.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with head size and head/body time limits (set by `limited_protocol`)."""

    max_head_bytes = 16 * 1024
    head_timeout = 10.0
    body_timeout = 120.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # before the end of a request's head
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._linger_left: int | None = None  # bytes still read and dropped after a refusal

    # --- timers -------------------------------------------------------------------------------

    def _arm(self, seconds: float, message: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, message)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, message: str) -> None:
        self._deadline = None
        self._refuse(408, message)

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless a response has started) and close the connection."""
        if self.transport.is_closing() or self._linger_left is not None:
            return
        cycle = self.cycle
        self.logger.debug("%s; connection closed", message)  # debug: no log floods
        if not (self._in_head or cycle is None or not cycle.response_started):
            self.transport.close()  # a response is under way: nothing more can be said
            return
        body = orjson.dumps(APIError(status, message, code="request_rejected").body())
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self._linger()

    def _linger(self) -> None:
        """Shut the write side and drop what the client still sends (see the module doc)."""
        if cycle := self.cycle:  # the request being read is over: its app must not answer
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # sent once the answer is: the client reads it, then EOF
        self._linger_left = LINGER_BYTES
        self._disarm()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # --- protocol and parser callbacks --------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, self._head_late())

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_left is not None:  # refused: read and dropped, up to a bound
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.transport.close()
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Bytes of a head still incomplete after this chunk were all head bytes.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, f"request head is over the limit of {self.max_head_bytes:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a request on a kept-alive connection: timed from here
            self._arm(self.head_timeout, self._head_late())

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        if not self.pipeline:  # a queued (pipelined) request is not read yet: not timed
            self._arm(
                self.body_timeout,
                f"request body not complete within {self.body_timeout:g} s",
            )

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _head_late(self) -> str:
        return f"request head not complete within {self.head_timeout:g} s"


def limited_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with the limits from settings."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_head_bytes": settings.max_request_header_bytes,
            "head_timeout": settings.request_header_timeout,
            "body_timeout": settings.request_body_timeout,
        },
    )
