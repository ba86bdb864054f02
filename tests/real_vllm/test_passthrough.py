"""Passthrough mode in front of the real vLLM: answers, usage and vLLM's own errors survive."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from tests.real_vllm.conftest import sdk
from tests.real_vllm.helpers import image_message, png_data_url
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME
from tests.support import Process

pytestmark = pytest.mark.real_vllm

CLIENT_MODEL = "my-ocr-alias"


@pytest.fixture
def gateway(make_gateway: Callable[..., Process]) -> openai.OpenAI:
    return sdk(make_gateway(prompt_mode="passthrough", ocrflux_model=DEFAULT_MODEL_NAME).url)


def test_image_request_matches_vllm(gateway: openai.OpenAI, direct: openai.OpenAI) -> None:
    # 256x256 is under IMAGE_MAX_SIDE and PNG is lossless: vLLM sees the same pixels both ways.
    messages = image_message([png_data_url(256, 256)])
    via = gateway.chat.completions.create(
        model=CLIENT_MODEL,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
    )
    ref = direct.chat.completions.create(
        model=DEFAULT_MODEL_NAME,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
    )
    assert via.model == CLIENT_MODEL
    assert via.usage is not None and ref.usage is not None
    assert via.usage.model_dump() == ref.usage.model_dump()
    assert via.choices[0].finish_reason == ref.choices[0].finish_reason
    # Greedy decoding of the same prompt: the same noise, token for token.
    assert via.choices[0].message.content == ref.choices[0].message.content


def test_streamed_image_request_matches_vllm(gateway: openai.OpenAI, direct: openai.OpenAI) -> None:
    messages = image_message([png_data_url(320, 200, seed=3)])

    def collect(client: openai.OpenAI, model: str) -> tuple[list[str], str, dict[str, int]]:
        stream = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=10,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None, "stream must end with usage"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return [c.model for c in chunks], text, last.usage.model_dump()

    models, text, usage = collect(gateway, CLIENT_MODEL)
    _, ref_text, ref_usage = collect(direct, DEFAULT_MODEL_NAME)
    assert set(models) == {CLIENT_MODEL}
    assert usage == ref_usage
    assert usage["completion_tokens"] == 10
    assert text == ref_text


def _vllm_error(client: openai.OpenAI, model: str, **request: object) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, **request)  # type: ignore[call-overload]
    return info.value


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        # Text only: with an image the gateway's own context check would answer first.
        (
            {
                "messages": [{"role": "user", "content": "Describe the page."}],
                "max_tokens": 100_000,
            },
            "max_tokens",
        ),
        # vLLM runs with --limit-mm-per-prompt image=4; the gateway allows 32 by default.
        ({"messages": image_message([png_data_url(64, 64)] * 5), "max_tokens": 4}, "image"),
    ],
    ids=["max_tokens_too_large", "too_many_images"],
)
def test_vllm_400s_reach_the_client_intact(
    gateway: openai.OpenAI,
    direct: openai.OpenAI,
    request_fields: dict[str, object],
    param: str,
) -> None:
    ref = _vllm_error(direct, DEFAULT_MODEL_NAME, **request_fields)
    via = _vllm_error(gateway, CLIENT_MODEL, **request_fields)
    assert ref.param == param  # what vLLM says, so a vLLM upgrade that changes it shows here
    assert via.status_code == ref.status_code == 400
    assert isinstance(via.body, dict) and isinstance(ref.body, dict)
    assert via.body["message"] == ref.body["message"]
    assert via.param == ref.param
