"""End to end: the official openai SDK -> gateway process -> fake vLLM process."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support import FakeVLLMProcess, Process

CLIENT_MODEL = "Qwen/Qwen2.5-VL-32B-Instruct"


def client(gateway: Process, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="anything", max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_sdk_non_streaming_echoes_model_and_real_usage(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="# Title\n\nBody text.")
    reply = client(passthrough_gateway).chat.completions.create(
        model=CLIENT_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Read this."},
        ],
        max_tokens=64,
        temperature=0.2,
    )
    assert reply.model == CLIENT_MODEL
    assert reply.choices[0].message.content == "# Title\n\nBody text."
    (received,) = fake.requests()
    assert received["body"]["model"] == "ChatDOC/OCRFlux-3B"
    assert reply.usage is not None
    assert reply.usage.model_dump(exclude_none=True) == received["usage"]


def test_unknown_vllm_fields_pass_through_and_gateway_fields_do_not(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    client(passthrough_gateway).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"repetition_penalty": 1.05, "top_k": 20, "output_format": "markdown"},
        seed=7,
        stop=["###"],
    )
    (received,) = fake.requests()
    body = received["body"]
    assert (body["repetition_penalty"], body["top_k"], body["seed"], body["stop"]) == (
        1.05,
        20,
        7,
        ["###"],
    )
    assert "output_format" not in body


def test_sdk_streaming_rewrites_model_and_ends_with_usage(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="one two three four five six seven eight", stream_chunks=8)
    stream = client(passthrough_gateway).chat.completions.create(
        model=CLIENT_MODEL,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {CLIENT_MODEL}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five six seven eight"
    assert len([c for c in chunks if c.choices]) >= 8  # passed through chunk by chunk
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == fake.requests()[0]["usage"]


def test_stream_is_relayed_before_the_upstream_finishes(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="abcdefghij", stream_chunks=10, chunk_delay=0.15)
    started = time.monotonic()
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream(
        "POST", f"{passthrough_gateway.url}/v1/chat/completions", json=body, timeout=10
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        first_at = time.monotonic() - started
        rest = [line for line in lines if line.startswith("data:")]
    assert '"role":"assistant"' in first
    assert first_at < 1.0  # the whole answer takes >= 1.5 s upstream
    assert rest[-1] == "data: [DONE]"


def test_client_disconnect_cancels_the_upstream_stream(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer="x" * 200, stream_chunks=200, chunk_delay=0.02)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream(
        "POST", f"{passthrough_gateway.url}/v1/chat/completions", json=body, timeout=10
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # leave after the first event
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not fake.events():
        time.sleep(0.05)
    assert [e["event"] for e in fake.events()] == ["client_disconnected"]


def test_request_id_is_accepted_propagated_and_returned(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(
        f"{passthrough_gateway.url}/v1/chat/completions",
        json=body,
        headers={"X-Request-ID": "req-abc.123"},
    )
    assert response.headers["x-request-id"] == "req-abc.123"
    assert fake.requests()[0]["headers"]["x-request-id"] == "req-abc.123"

    generated = httpx.post(f"{passthrough_gateway.url}/v1/chat/completions", json=body)
    assert len(generated.headers["x-request-id"]) == 32
    assert fake.requests()[1]["headers"]["x-request-id"] == generated.headers["x-request-id"]


def test_models_lists_the_served_model(passthrough_gateway: Process) -> None:
    models = client(passthrough_gateway).models.list()
    assert [m.id for m in models.data] == ["ChatDOC/OCRFlux-3B"]


@pytest.mark.parametrize(
    "path",
    [
        "/tokenize",
        "/v1/completions",
        "/v1/load_lora_adapter",
        "/invocations",
        "/metrics/../tokenize",
    ],
)
def test_only_defined_routes_are_served(
    passthrough_gateway: Process, fake: FakeVLLMProcess, path: str
) -> None:
    response = httpx.post(f"{passthrough_gateway.url}{path}", json={"prompt": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert fake.requests() == []
