"""The harness itself: the real vLLM behaves the way the gateway suites rely on."""

from __future__ import annotations

import httpx
import openai
import pytest

from ocrflux.intake.tokens import IMAGE_WRAPPER_TOKENS
from tests.real_vllm.helpers import image_message, png_data_url
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME, RealVLLM

pytestmark = pytest.mark.real_vllm

# 256x256 -> smart_resize keeps 252x252 -> 9x9 merged 28x28 blocks.
TOKENS_256 = 81


def test_health_and_models(vllm: RealVLLM) -> None:
    assert httpx.get(f"{vllm.url}/health", timeout=10).status_code == 200
    models = httpx.get(f"{vllm.url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [DEFAULT_MODEL_NAME]
    assert models["data"][0]["max_model_len"] == vllm.max_model_len


def test_image_chat_counts_image_tokens(direct: openai.OpenAI) -> None:
    text_only = direct.chat.completions.create(
        model=DEFAULT_MODEL_NAME,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe the page."}]}],
        max_tokens=1,
    )
    reply = direct.chat.completions.create(
        model=DEFAULT_MODEL_NAME,
        messages=image_message([png_data_url(256, 256)]),  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
    )
    assert reply.model == DEFAULT_MODEL_NAME
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage is not None and text_only.usage is not None
    assert reply.usage.completion_tokens <= 8
    image_cost = reply.usage.prompt_tokens - text_only.usage.prompt_tokens
    assert image_cost == TOKENS_256 + IMAGE_WRAPPER_TOKENS


def test_stream_ends_with_usage_chunk(direct: openai.OpenAI) -> None:
    stream = direct.chat.completions.create(
        model=DEFAULT_MODEL_NAME,
        messages=image_message([png_data_url(256, 256)]),  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "length"


def test_tokenize_renders_the_chat_template(vllm: RealVLLM) -> None:
    body = {
        "model": DEFAULT_MODEL_NAME,
        "messages": image_message([png_data_url(256, 256)]),
        "add_generation_prompt": True,
        "return_token_strs": True,
    }
    data = httpx.post(f"{vllm.url}/tokenize", json=body, timeout=60).json()
    strs = data["token_strs"]
    assert strs.count("<|image_pad|>") == TOKENS_256
    assert strs.count("<|vision_start|>") == strs.count("<|vision_end|>") == 1
    # Byte-level BPE shows "\n" as "Ċ": Qwen's default system turn, then the generation prompt.
    rendered = "".join(strs)
    assert rendered.startswith("<|im_start|>systemĊYouĠareĠaĠhelpfulĠassistant.<|im_end|>")
    assert rendered.endswith("<|im_end|>Ċ<|im_start|>assistantĊ")
    assert data["count"] == len(strs)


@pytest.mark.parametrize(
    ("images", "max_tokens", "param", "fragment"),
    [
        (1, 100_000, "max_tokens", "cannot be greater than max_model_len"),
        (5, 4, "image", "At most 4 image(s)"),
    ],
)
def test_errors_are_openai_shaped(
    direct: openai.OpenAI, images: int, max_tokens: int, param: str, fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        direct.chat.completions.create(
            model=DEFAULT_MODEL_NAME,
            messages=image_message([png_data_url(64, 64)] * images),  # type: ignore[arg-type]
            max_tokens=max_tokens,
        )
    assert info.value.status_code == 400
    assert info.value.param == param
    assert isinstance(info.value.body, dict) and fragment in info.value.body["message"]
