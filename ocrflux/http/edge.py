"""The edge: the outermost ASGI layer, around everything FastAPI does.

Per HTTP request it: takes the client's `X-Request-ID` if sane or makes one; puts it on every
response (500s included); serves the hot routes (the chat completion) directly, without
FastAPI's routing and dependency injection (~0.2 ms a request); turns an unexpected exception
into one logged OpenAI-shaped 500 and a client that left into one INFO line (no tracebacks);
counts the request in the metrics and writes its one access line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocrflux.errors import APIError
from ocrflux.metrics import record_request
from ocrflux.observability import (
    VALID_REQUEST_ID,
    RequestLog,
    request_id_var,
    request_log_var,
)

logger = logging.getLogger("ocrflux")
access = logging.getLogger("ocrflux.access")

Handler = Callable[[Request], Awaitable[Response]]
# nginx's name for "the client closed the connection before the answer".
CLIENT_CLOSED = 499


def new_request_id() -> str:
    return os.urandom(16).hex()


class Edge:
    """Request ids, hot routes, the last line of error handling, metrics, the access line."""

    def __init__(self, app: ASGIApp, hot: Mapping[tuple[str, str], Handler], json_logs: bool):
        self.app = app
        self.hot = dict(hot)
        self.json_logs = json_logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if not VALID_REQUEST_ID.fullmatch(request_id):
            request_id = new_request_id()
        log = RequestLog(request_id)
        id_token, log_token = request_id_var.set(request_id), request_log_var.set(log)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        path = scope["path"]
        status = sent = received = 0
        complete = disconnected = False

        async def counted_receive() -> Message:
            nonlocal received, disconnected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            elif message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        handler = self.hot.get((scope["method"], path))
        try:
            if handler is not None:
                await self._serve(handler, scope, counted_receive, send_with_id)
            else:
                await self.app(scope, counted_receive, send_with_id)
        except ClientDisconnect:
            disconnected = True
        except Exception as exc:
            if not disconnected:
                logger.error("unhandled error on %s %s", scope["method"], path, exc_info=exc)
            if not status:
                error = APIError(500, "internal error in the gateway", code="internal_error")
                await error.response()(scope, counted_receive, send_with_id)
        finally:
            if disconnected and (not status or not complete or status == CLIENT_CLOSED):
                status = status or CLIENT_CLOSED
                log.status_note = log.status_note or "client disconnected"
            elif not complete and not log.status_note:
                log.status_note = "response cut short"
            route = self._route(scope, handler is not None)
            elapsed = time.perf_counter() - started
            record_request(route, status, elapsed, received, sent)
            if access.isEnabledFor(logging.INFO):
                self._access_line(scope, route, status, elapsed, log, received, sent)
            request_log_var.reset(log_token)
            request_id_var.reset(id_token)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except APIError as exc:
            response = exc.response()
        await response(scope, receive, send)

    @staticmethod
    def _route(scope: Scope, hot: bool) -> str:
        """A bounded label: the route's template, never the raw path of an unknown URL."""
        if hot:
            return str(scope["path"])
        route = scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else "unmatched"

    def _access_line(
        self,
        scope: Scope,
        route: str,
        status: int,
        elapsed: float,
        log: RequestLog,
        received: int,
        sent: int,
    ) -> None:
        millis = elapsed * 1000
        if self.json_logs:
            fields = {
                "method": scope["method"],
                "route": route,
                "path": scope["path"],
                "status": status,
                "latency_ms": round(millis, 2),
                "replicas": log.replicas,
                "retries": log.retries,
                "pages": log.pages,
                "bytes_in": received,
                "bytes_out": sent,
            }
            if log.status_note:
                fields["note"] = log.status_note
            access.info("access", extra={"fields": fields})
            return
        line = f"{scope['method']} {scope['path']} {status} {millis:.1f}ms"
        if log.replicas:
            line += f" replicas={','.join(log.replicas)} retries={log.retries}"
        if log.pages:
            line += f" pages={log.pages}"
        if log.status_note:
            line += f" ({log.status_note})"
        access.info(line)
