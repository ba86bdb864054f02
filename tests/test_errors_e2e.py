"""End to end: every failure reaches the client in OpenAI's error shape with the right status."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import openai
import orjson
import pytest

from tests.support import FakeVLLMProcess, Process, free_port

TEXT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def post(gateway: Process, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": "not-an-object"}],
                    },
                ],
            },
            "messages[1].content[0].image_url",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0].type",
        ),
        ({**TEXT, "temperature": 3}, "temperature"),
        ({**TEXT, "max_tokens": 0}, "max_tokens"),
        ({**TEXT, "stream_options": {"include_usage": "maybe"}}, "stream_options.include_usage"),
        ({**TEXT, "n": "two"}, "n"),
        ({**TEXT, "output_format": "pdf"}, "output_format"),
        ({**TEXT, "stop": 5}, "stop"),
        ({**TEXT, "stop": ["a", 5]}, "stop"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(
    passthrough_gateway: Process, fake: FakeVLLMProcess, body: object, param: str
) -> None:
    response = post(passthrough_gateway, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert fake.requests() == []


def test_body_that_is_not_json_gets_400(passthrough_gateway: Process) -> None:
    response = httpx.post(
        f"{passthrough_gateway.url}/v1/chat/completions",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_body_over_the_limit_gets_413(make_gateway: Callable[..., Process]) -> None:
    gateway = make_gateway(prompt_mode="passthrough", max_request_bytes=2048)
    response = post(gateway, {**TEXT, "padding": "x" * 5000})
    assert response.status_code == 413
    chunked = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=iter([b'{"model": "m", "x": "', b"y" * 5000, b'"}']),
    )
    assert chunked.status_code == 413


def test_upstream_4xx_keeps_status_and_message(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(fail=[400])
    response = post(passthrough_gateway, TEXT)
    assert response.status_code == 400
    assert error_of(response)["message"] == "fake failure 400"
    assert len(fake.requests()) == 1  # never retried


def test_retryable_status_is_retried_then_succeeds(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(fail=[503])
    response = post(passthrough_gateway, TEXT)
    assert response.status_code == 200
    assert len(fake.requests()) == 2


def test_retries_are_bounded_by_max_retries(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", max_retries=2)
    fake.control(fail=[502, 504, 503, 503])
    response = post(gateway, TEXT)
    assert response.status_code == 503
    assert error_of(response)["message"] == "fake failure 503"
    assert len(fake.requests()) == 3


def test_retry_after_is_honoured(passthrough_gateway: Process, fake: FakeVLLMProcess) -> None:
    fake.control(fail=[429], retry_after="1")
    response = post(passthrough_gateway, TEXT)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 1.0
    assert len(fake.requests()) == 2


def test_dropped_connection_is_retried(passthrough_gateway: Process, fake: FakeVLLMProcess) -> None:
    fake.control(drop=1)
    assert post(passthrough_gateway, TEXT).status_code == 200
    assert len(fake.requests()) == 2


def test_unreachable_upstream_gives_503(make_gateway: Callable[..., Process]) -> None:
    gateway = make_gateway(upstream_port=free_port(), prompt_mode="passthrough")
    response = post(gateway, TEXT)
    assert response.status_code == 503
    assert error_of(response)["code"] == "upstream_unavailable"


def test_upstream_read_timeout_gives_504(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", read_timeout=0.3)
    fake.control(delay=1.0)
    response = post(gateway, TEXT)
    assert response.status_code == 504
    assert len(fake.requests()) == 1


def test_upstream_garbage_gives_502(passthrough_gateway: Process, fake: FakeVLLMProcess) -> None:
    fake.control(garbage=1)
    response = post(passthrough_gateway, TEXT)
    assert response.status_code == 502
    assert error_of(response)["type"] == "server_error"


def test_stream_broken_midway_ends_with_an_error_event(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="a b c d e f", stream_chunks=6, stream_drop_after=2)
    client = openai.OpenAI(base_url=f"{passthrough_gateway.url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="m", messages=TEXT["messages"], stream=True)
    with pytest.raises(openai.APIError, match="dropped the stream"):
        list(stream)
    assert len(fake.requests()) == 1  # a started stream is never retried


def test_api_keys_guard_v1_but_not_health(make_gateway: Callable[..., Process]) -> None:
    gateway = make_gateway(prompt_mode="passthrough", api_keys="k1,secret-two")
    assert post(gateway, TEXT).status_code == 401
    wrong = post(gateway, TEXT, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert error_of(wrong)["code"] == "invalid_api_key"
    # Only a whole key: not a key with more after it, a prefix of one, or another case.
    for near in ["k1-extra", "k1 k1", "k", "K1", "secret-tw", "secret-two2", "k1,secret-two"]:
        near_miss = post(gateway, TEXT, headers={"Authorization": f"Bearer {near}"})
        assert near_miss.status_code == 401, near
    for scheme in ["Basic k1", "k1", "Bearerk1"]:
        assert post(gateway, TEXT, headers={"Authorization": scheme}).status_code == 401
    assert post(gateway, TEXT, headers={"Authorization": "bearer k1"}).status_code == 200
    # The schema (every route and field) is not served to anyone without DEBUG.
    for headers in [{}, {"Authorization": "Bearer k1"}]:
        assert httpx.get(f"{gateway.url}/openapi.json", headers=headers).status_code == 404
    assert post(gateway, TEXT, headers={"Authorization": "Bearer secret-two"}).status_code == 200
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k1", max_retries=0)
    assert sdk.models.list().data[0].id == "ChatDOC/OCRFlux-3B"
    assert httpx.get(f"{gateway.url}/health").status_code == 200


MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
WRONG_KEY = "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'."


def test_a_missing_key_is_told_how_to_send_one(make_gateway: Callable[..., Process]) -> None:
    gateway = make_gateway(prompt_mode="passthrough", api_keys="k1")
    for headers in [{}, {"Authorization": ""}, {"Authorization": "Bearer"}]:
        response = post(gateway, TEXT, headers=headers)
        assert response.status_code == 401, headers
        assert error_of(response) == {
            "message": MISSING_KEY,
            "type": "authentication_error",
            "param": None,
            "code": "missing_api_key",
        }, headers
    wrong = post(gateway, TEXT, headers={"Authorization": "Bearer nope"})
    assert (error_of(wrong)["message"], error_of(wrong)["code"]) == (WRONG_KEY, "invalid_api_key")


def test_without_api_keys_any_key_or_none_is_accepted(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="answered")
    for headers in [{}, {"Authorization": "Bearer whatever"}, {"Authorization": "Basic x"}]:
        response = post(passthrough_gateway, TEXT, headers=headers)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "answered"
    sent = fake.requests()
    assert len(sent) == 3
    # The client's key is its own business: vLLM gets the gateway's (none here), never it.
    assert all("authorization" not in request["headers"] for request in sent)


def test_openapi_schema_is_served_with_debug(make_gateway: Callable[..., Process]) -> None:
    gateway = make_gateway(prompt_mode="passthrough", debug="true")
    schema = httpx.get(f"{gateway.url}/openapi.json")
    assert schema.status_code == 200
    assert "/v1/chat/completions" in schema.json()["paths"]


def test_httpx_transport_fallback_keeps_the_same_behaviour(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", upstream_transport="httpx")
    fake.control(drop=1)
    assert post(gateway, TEXT).status_code == 200  # dropped connection retried
    fake.control(fail=[503])
    assert post(gateway, TEXT).status_code == 200  # retryable status retried
    fake.control(garbage=1)
    assert post(gateway, TEXT).status_code == 502
    fake.control(answer="a b c", stream_chunks=3)
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json={**TEXT, "stream": True}, timeout=10
    ) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]" and len(events) >= 5
    assert len(fake.requests()) == 6


def test_too_many_messages_or_parts_is_a_400_naming_the_limit(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(
        prompt_mode="passthrough", max_messages_per_request=3, max_content_parts_per_request=5
    )
    message = {"role": "user", "content": "x"}
    many = post(gateway, {"model": "m", "messages": [message] * 4})
    assert many.status_code == 400
    error = error_of(many)
    assert (error["param"], error["code"]) == ("messages", "too_many_messages")
    assert error["message"] == "the request has 4 messages, the limit is 3"
    parts = [{"type": "text", "text": ""}] * 3
    crowded = {"role": "user", "content": parts}
    response = post(gateway, {"model": "m", "messages": [message, crowded, crowded]})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["param"], error["code"]) == ("messages[2].content", "too_many_content_parts")
    assert "more than 5 content parts" in str(error["message"])
    assert post(gateway, {"model": "m", "messages": [message, crowded]}).status_code == 200
    assert len(fake.requests()) == 1


def test_a_body_of_a_million_tiny_values_is_refused_unparsed(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    parts = b",".join([b'{"type":"text","text":""}'] * 500_000)  # 13 MB, under the byte limit
    body = b'{"model":"m","messages":[{"role":"user","content":[' + parts + b"]}]}"
    response = httpx.post(
        f"{passthrough_gateway.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "request_too_complex"
    assert "the limit is 100,000" in str(error["message"])
    assert fake.requests() == []


@pytest.mark.parametrize("mode", ["passthrough", "ocrflux"])
@pytest.mark.parametrize("levels", [255, 1000])
def test_json_nested_too_deep_is_a_400_in_every_mode(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess, mode: str, levels: int
) -> None:
    gateway = make_gateway(prompt_mode=mode)
    deep = b"[" * levels + b"1" + b"]" * levels
    png = base64.b64encode(page_png()).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    messages = orjson.dumps([{"role": "user", "content": [image]}])
    for stream in (b"false", b"true"):
        body = b'{"model":"m","stream":' + stream + b',"top_k":' + deep
        body += b',"messages":' + messages + b"}"
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == "invalid_json"
    assert fake.requests() == []


def page_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), "white").save(buffer, "PNG")
    return buffer.getvalue()
