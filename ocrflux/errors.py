"""One error type, one OpenAI-shaped body, and the handlers that produce it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ocrflux.protocol import json_response

logger = logging.getLogger("ocrflux")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """An error the client sees, in OpenAI's `{"error": {...}}` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        fallback = "server_error" if status >= 500 else "invalid_request_error"
        self.type = type or _TYPES.get(status, fallback)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


def request_timeout(seconds: float) -> APIError:
    """The client's whole request ran past TOTAL_TIMEOUT (streams get it as an error event)."""
    return APIError(504, f"the request took longer than {seconds:g} s", code="timeout")


def check_image_count(count: int, limit: int) -> None:
    """MAX_IMAGES_PER_REQUEST: more images (or document parts) than `limit` is a 400."""
    if count > limit:
        raise APIError(
            400,
            f"the request has {count} images, the limit is {limit}",
            param="messages",
            code="too_many_images",
        )


def param_path(loc: Sequence[int | str]) -> str:
    """`("messages", 1, "content", 0)` -> `messages[1].content[0]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def from_validation_error(exc: ValidationError | RequestValidationError) -> APIError:
    """The first validation problem, with `param` naming the field."""
    first = exc.errors()[0]
    loc = [p for p in first.get("loc", ()) if p != "body"]
    param = param_path(loc) or None
    message = first.get("msg", "invalid request")
    message = message.removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return APIError(400, message, param=param, code="invalid_value")


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return from_validation_error(exc).response()


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return APIError(exc.status_code, str(exc.detail), code=code).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Not logged here: Starlette re-raises it after this answer and the edge logs it once.
    return APIError(500, "internal error in the gateway", code="internal_error").response()


async def _client_gone(_: Request, exc: Exception) -> Response:
    # Nobody is listening; 499 (nginx's "client closed request") is for the access line.
    return Response(status_code=499)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
