"""The `/v1/ocr` client's reading of answers the test gateway does not give on demand: a busy
gateway, a proxy's HTML error, a stream cut short (the end-to-end tests cover the rest)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson
import pytest

from ocrflux.cli.client import GatewayError, OCRClient, OCROptions, PageProgress

Handler = Callable[[httpx.Request], httpx.Response]


def sse(*events: tuple[str, dict[str, object]]) -> httpx.Response:
    body = b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"
        for name, data in events
    )
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


async def convert(handler: Handler, **client: object) -> tuple[dict[str, object], list[object]]:
    seen: list[object] = []
    ocr = OCRClient("http://gateway", transport=httpx.MockTransport(handler), **client)  # type: ignore[arg-type]
    try:
        answer = await ocr.convert("a.pdf", b"%PDF", OCROptions(pages="0-1"), seen.append)
    finally:
        await ocr.aclose()
    return answer, seen


async def test_pages_then_merge_then_result_and_the_upload_carries_the_options() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        page = {"index": 0, "markdown": "x", "fallback": False, "done": 1, "total": 2}
        return sse(("page", page), ("page", {**page, "index": 1, "done": 2}), ("merge", {}),
                   ("result", {"document_text": "x\n\ny", "num_pages": 2}))  # fmt: skip

    answer, seen = await convert(handler, api_key="k")
    assert answer == {"document_text": "x\n\ny", "num_pages": 2}
    assert seen == [PageProgress(0, 1, 2, False), PageProgress(1, 2, 2, False), None]
    request = requests[0]
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["accept"] == "text/event-stream"
    body = request.read()
    assert b'name="file"; filename="a.pdf"' in body and b"application/pdf" in body
    assert b'name="pages"\r\n\r\n0-1' in body and b'name="stream"\r\n\r\ntrue' in body


async def test_a_busy_gateway_is_asked_again_after_its_retry_after() -> None:
    answers = [
        httpx.Response(429, json={"error": {"message": "busy"}}, headers={"retry-after": "0"}),
        httpx.Response(503, json={"error": {"message": "vLLM away"}}, headers={"retry-after": "0"}),
        sse(("result", {"document_text": "ok"})),
    ]
    answer, _ = await convert(lambda request: answers.pop(0))
    assert answer == {"document_text": "ok"}


async def test_a_gateway_busy_every_time_fails_with_its_message() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "vLLM away"}},
                              headers={"retry-after": "0"})  # fmt: skip

    with pytest.raises(GatewayError, match=r"vLLM away \(HTTP 503\)"):
        await convert(busy, retries=1)


@pytest.mark.parametrize(
    ("response", "says", "fatal"),
    [
        (httpx.Response(401, json={"error": {"message": "Incorrect API key"}}), "OCRFLUX_API_KEY",
         True),
        (httpx.Response(502, text="<html>Bad Gateway</html>"),
         r"<html>Bad Gateway</html> \(HTTP 502", False),
        (sse(("page", {"done": 1, "total": 3})), "ended the stream before the result", False),
        (sse(("error", {"error": {"message": "the document took longer than 5 s"}})),
         "took longer than 5 s", False),
        (httpx.Response(200, content=b"[1]", headers={"content-type": "application/json"}),
         "not a JSON object", False),
    ],
)  # fmt: skip
async def test_failures_say_why(response: httpx.Response, says: str, fatal: bool) -> None:
    with pytest.raises(GatewayError, match=says) as caught:
        await convert(lambda request: response)
    assert caught.value.fatal is fatal


async def test_an_unreachable_gateway_is_fatal() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    ocr = OCRClient("http://gateway", transport=httpx.MockTransport(refuse))
    with pytest.raises(GatewayError, match="cannot reach the gateway at http://gateway") as caught:
        await ocr.check()
    await ocr.aclose()
    assert caught.value.fatal


@pytest.mark.parametrize("url", ["http://gateway:8000/v1", "http://gateway:8000/v1/",
                                 "http://gateway:8000"])  # fmt: skip
async def test_a_url_ending_in_v1_is_the_gateway_itself(url: str) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/ocr":
            return sse(("result", {"document_text": "ok"}))
        return httpx.Response(404, json={"detail": "Not Found"})

    ocr = OCRClient(url, transport=httpx.MockTransport(handler))
    try:
        await ocr.check()
        answer = await ocr.convert("a.pdf", b"%PDF", OCROptions(), lambda page: None)
    finally:
        await ocr.aclose()
    assert answer == {"document_text": "ok"}
    assert paths == ["/health", "/v1/ocr"]
    assert ocr.base_url == "http://gateway:8000"


async def test_a_url_with_no_gateway_behind_it_stops_the_run_with_a_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found")

    ocr = OCRClient("http://gateway:8000/api", transport=httpx.MockTransport(handler))
    with pytest.raises(GatewayError) as caught:
        await ocr.check()
    await ocr.aclose()
    assert caught.value.fatal
    assert caught.value.reason == (
        "no gateway at http://gateway:8000/api: GET /health answered HTTP 404; --url is the "
        "gateway's base URL, like http://localhost:8000"
    )
