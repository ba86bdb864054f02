"""Request ids, what one request did (for its access line), and log formatting.

Every log line carries the request id (a context variable). Layers below the routes add to the
current request's `RequestLog` (replicas used, retries, pages) without knowing who prints it;
the edge (`ocrflux.http.edge`) prints it as one access line per request.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

NO_REQUEST_ID = "-"  # the id outside any request (start-up, background work)
request_id_var: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST_ID)

# Accept a client's id only if it is short and harmless in a log line or a header.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestLog:
    """What one request did, filled in by the layers it passed through."""

    __slots__ = ("pages", "replicas", "request_id", "retries", "status_note")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.replicas: list[str] = []
        self.retries = 0
        self.pages = 0
        self.status_note = ""  # e.g. "client disconnected", "cut: client stopped reading"

    def used(self, replica: str, retry: bool) -> None:
        self.replicas.append(replica)
        if retry:
            self.retries += 1


request_log_var: ContextVar[RequestLog | None] = ContextVar("request_log", default=None)


def current_request() -> RequestLog | None:
    """The `RequestLog` of the request being served (None outside a request)."""
    return request_log_var.get()


def add_pages(n: int) -> None:
    log = request_log_var.get()
    if log is not None:
        log.pages += n


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class IncompleteResponseFilter(logging.Filter):
    """Drop uvicorn's line for a response the gateway cut on purpose (the edge logs its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "ASGI callable returned without completing response."


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00.123 INFO name [request-id] message`, the time cached per second."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        millis = int((record.created - second) * 1000)
        line = (
            f"{self._stamp}.{millis:03d} {record.levelname} {record.name} "
            f"[{getattr(record, 'request_id', '-')}] {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; an access line's fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def configure_logging(debug: bool, fmt: str = "text") -> None:
    """The gateway's and uvicorn's loggers: one handler on stderr, text or JSON lines."""
    # Per-record bookkeeping the formatters never show (~6 us a line).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in ("ocrflux", "uvicorn"):
        owner = logging.getLogger(name)
        owner.handlers[:] = [handler]
        owner.setLevel(logging.DEBUG if debug else logging.INFO)
        owner.propagate = False
    logging.getLogger("uvicorn.error").addFilter(IncompleteResponseFilter())
