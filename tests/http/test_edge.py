"""The edge: ids on every response, one logged 500 for a bug, quiet client aborts (in process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import Response

from ocrflux.app import create_app
from ocrflux.settings import Settings


class Broken:
    async def complete(self, *args: Any) -> Response:
        raise RuntimeError("a bug in the gateway")


@pytest.fixture
def app() -> FastAPI:
    app = create_app(Settings(vllm_url="http://vllm.test"))

    async def boom() -> Response:
        raise ValueError("a bug in a FastAPI route")

    app.add_api_route("/boom", boom)
    app.state.chat = Broken()  # what the hot chat route delegates to
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


@pytest.mark.parametrize(("method", "path"), [("GET", "/boom"), ("POST", "/v1/chat/completions")])
async def test_an_unexpected_error_is_one_logged_500_with_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="ocrflux")
    response = await client.request(
        method, path, json={"model": "m", "messages": []}, headers={"x-request-id": "bug-1"}
    )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json()["error"]["code"] == "internal_error"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    access = [r.getMessage() for r in caplog.records if r.name == "ocrflux.access"]
    assert access == [f"{method} {path} 500 " + access[0].split(" 500 ")[1]]


@pytest.mark.parametrize(
    "bad",
    ["has spaces", "bracket]", "x" * 200, "tab\there", ""],
    ids=["spaces", "bracket", "200-chars", "tab", "empty"],
)
async def test_an_invalid_request_id_is_replaced_by_a_fresh_one(
    client: httpx.AsyncClient, bad: str
) -> None:
    headers = {"x-request-id": bad}
    response = await client.get("/boom", headers=headers)
    fresh = response.headers["x-request-id"]
    assert fresh != bad and len(fresh) == 32 and int(fresh, 16) >= 0
    again = await client.get("/boom", headers=headers)
    assert again.headers["x-request-id"] != fresh  # fresh per request, not a constant


async def test_a_valid_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom", headers={"x-request-id": "trace:42_a-b.c"})
    assert response.headers["x-request-id"] == "trace:42_a-b.c"


async def test_not_found_keeps_the_openai_shape_and_gets_an_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert len(response.headers["x-request-id"]) == 32
