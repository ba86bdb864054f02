"""OCRFlux mode against the real vLLM: the tiny model's noise is never page JSON, so every
page is re-asked at rising temperatures and then returned as raw text, marked as a fallback.

A recording proxy sits between the gateway and vLLM, so the tests see exactly what vLLM was
asked and answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from ocrflux.engines.vllm_calls import TEMPERATURE_STEP
from ocrflux.format.page import build_page_prompt
from ocrflux.pages import FALLBACK_HEADER
from tests.real_vllm.conftest import sdk
from tests.real_vllm.helpers import RecordingProxy, image_message, png_data_url
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME, RealVLLM
from tests.support import Process

pytestmark = pytest.mark.real_vllm

PAGE_RETRIES = 2
PAGE_MAX_TOKENS = 24
CLIENT_MODEL = "ocrflux"


@pytest.fixture
def proxy(vllm: RealVLLM) -> Iterator[RecordingProxy]:
    with RecordingProxy(vllm.url) as recorder:
        yield recorder


@pytest.fixture
def gateway(make_gateway: Callable[..., Process], proxy: RecordingProxy) -> openai.OpenAI:
    gateway = make_gateway(
        upstream_port=proxy.port,
        prompt_mode="ocrflux",
        page_retries=PAGE_RETRIES,
        page_max_tokens=PAGE_MAX_TOKENS,
        max_retries=0,
    )
    proxy.clear()  # start-up health checks are not what these tests are about
    return sdk(gateway.url)


def _answers(proxy: RecordingProxy) -> list[str]:
    return [e.response["choices"][0]["message"]["content"] for e in proxy.chat_calls()]


def test_noise_is_retried_then_returned_raw(gateway: openai.OpenAI, proxy: RecordingProxy) -> None:
    raw = gateway.chat.completions.with_raw_response.create(
        model=CLIENT_MODEL,
        messages=image_message([png_data_url(256, 256)], text=""),  # type: ignore[arg-type]
    )
    reply = raw.parse()
    assert raw.status_code == 200
    assert raw.headers.get(FALLBACK_HEADER) == "1"
    assert reply.model == CLIENT_MODEL

    calls = proxy.chat_calls()
    assert len(calls) == PAGE_RETRIES + 1
    assert all(call.status == 200 for call in calls), [c.response for c in calls]
    temperatures = [call.request["temperature"] for call in calls]
    assert temperatures == [round(TEMPERATURE_STEP * i, 3) for i in range(PAGE_RETRIES + 1)]
    for call in calls:
        assert call.request["model"] == DEFAULT_MODEL_NAME
        assert call.request["max_tokens"] == PAGE_MAX_TOKENS
        parts = call.request["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["text", "image_url"]  # the toolkit's order
        assert parts[0]["text"] == build_page_prompt()

    # The last attempt's own words are what the client gets, and its usage is every attempt's.
    assert reply.choices[0].message.content == _answers(proxy)[-1].strip()
    assert reply.usage is not None
    prompt = sum(c.response["usage"]["prompt_tokens"] for c in calls)
    completion = sum(c.response["usage"]["completion_tokens"] for c in calls)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, completion)


def test_streamed_pages_mark_fallbacks(gateway: openai.OpenAI, proxy: RecordingProxy) -> None:
    urls = [png_data_url(200, 280, seed=1), png_data_url(280, 200, seed=2)]
    stream = gateway.chat.completions.create(
        model=CLIENT_MODEL,
        messages=image_message(urls, text=""),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {CLIENT_MODEL}
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert (finals[0].model_extra or {}).get("ocrflux_fallback_pages") == [1, 2]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip(), "the raw page text is returned, not nothing"

    assert len(proxy.chat_calls()) == 2 * (PAGE_RETRIES + 1)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens == sum(
        c.response["usage"]["prompt_tokens"] for c in proxy.chat_calls()
    )
