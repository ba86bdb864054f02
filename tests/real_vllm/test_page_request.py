"""An OCRFlux page request as the real vLLM reads it: the toolkit's token order and page size.

vLLM's `/tokenize` renders a chat request through the model's own chat template and image
processor, so it shows exactly the token sequence the model reads. A gateway page call must
read as the toolkit's offline prompt (chatdoc-com/OCRFlux@71954ad ocrflux/inference.py,
`build_qwen2_5_vl_prompt`), its one `<|image_pad|>` standing for the page's pad tokens, and a
600x800 page must cost what the toolkit's 768x1024 rendering of it costs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from ocrflux.engines.vllm import is_request_error
from ocrflux.format.page import build_page_prompt
from ocrflux.intake.tokens import IMAGE_WRAPPER_TOKENS, image_tokens
from ocrflux.upstream.errors import upstream_error
from tests.real_vllm.conftest import sdk
from tests.real_vllm.helpers import Exchange, RecordingProxy, image_message, png_data_url
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME, RealVLLM
from tests.support import Process

pytestmark = pytest.mark.real_vllm

IMAGE_PAD = "<|image_pad|>"


def build_qwen2_5_vl_prompt(question: str) -> str:
    """chatdoc-com/OCRFlux@71954ad ocrflux/inference.py `build_qwen2_5_vl_prompt` (restated:
    the toolkit is not on PyPI): the prompt its offline `LLM.generate` reads for a page."""
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
        f"{question}<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.fixture
def proxy(vllm: RealVLLM) -> Iterator[RecordingProxy]:
    with RecordingProxy(vllm.url) as recorder:
        yield recorder


@pytest.fixture
def page_call(make_gateway: Callable[..., Process], proxy: RecordingProxy) -> Exchange:
    """The one vLLM call the gateway makes for a 600x800 page (the tiny model's noise is never
    page JSON; one attempt and a short answer keep it quick)."""
    gateway = make_gateway(
        upstream_port=proxy.port, prompt_mode="ocrflux", page_retries=0, page_max_tokens=8
    )
    proxy.clear()
    reply = sdk(gateway.url).chat.completions.create(
        model="ocrflux",
        messages=image_message([png_data_url(600, 800)], text=""),  # type: ignore[arg-type]
    )
    assert reply.choices[0].message.content is not None
    (call,) = proxy.chat_calls()
    assert call.status == 200, call.response
    return call


def tokenize(vllm: RealVLLM, **request: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{vllm.url}/tokenize",
        json={"model": DEFAULT_MODEL_NAME, "return_token_strs": True, **request},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def collapsed(tokens: list[int], strs: list[str]) -> list[int]:
    """The token ids with each run of image pads reduced to one, as in the offline prompt."""
    out: list[int] = []
    for i, (token, text) in enumerate(zip(tokens, strs, strict=True)):
        if text == IMAGE_PAD and i and strs[i - 1] == IMAGE_PAD:
            continue
        out.append(token)
    return out


def sent_size(call: Exchange) -> tuple[int, int]:
    url = call.request["messages"][0]["content"][1]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
        return image.size


def test_a_page_call_reads_as_the_toolkits_offline_prompt(
    vllm: RealVLLM, page_call: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = page_call.request["messages"]
    chat = tokenize(vllm, messages=messages, add_generation_prompt=True)
    offline = tokenize(vllm, prompt=build_qwen2_5_vl_prompt(build_page_prompt()))
    pads = chat["token_strs"].count(IMAGE_PAD)
    with capsys.disabled():
        head = [s for s in chat["token_strs"] if s != IMAGE_PAD]
        print(
            f"\nchat template ({chat['count']} tokens, {pads} pads) around the page, pads "
            f"collapsed: {''.join(head[:12])!r} ... {''.join(head[-12:])!r}"
        )
    assert offline["token_strs"].count(IMAGE_PAD) == 1
    assert collapsed(chat["tokens"], chat["token_strs"]) == offline["tokens"]
    assert pads == image_tokens(768, 1024)  # the page as the toolkit sizes it

    # The order the gateway used to send (image first) reads differently: the check can fail.
    image_first = [{**messages[0], "content": messages[0]["content"][::-1]}]
    before = tokenize(vllm, messages=image_first, add_generation_prompt=True)
    assert collapsed(before["tokens"], before["token_strs"]) != offline["tokens"]


def test_a_600x800_page_costs_what_the_toolkits_768x1024_page_costs(
    vllm: RealVLLM, page_call: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sent_size(page_call) == (768, 1024)
    prompt_tokens = page_call.response["usage"]["prompt_tokens"]
    text_only = [{"role": "user", "content": [{"type": "text", "text": build_page_prompt()}]}]
    text_tokens = tokenize(vllm, messages=text_only, add_generation_prompt=True)["count"]
    estimate = image_tokens(768, 1024) + IMAGE_WRAPPER_TOKENS
    with capsys.disabled():
        print(
            f"\n600x800 page: vLLM prompt_tokens {prompt_tokens} = text {text_tokens} + image "
            f"{prompt_tokens - text_tokens}; estimate for 768x1024: {estimate} "
            f"(600x800 as sent before: {image_tokens(600, 800) + IMAGE_WRAPPER_TOKENS})"
        )
    assert prompt_tokens - text_tokens == estimate
    assert page_call.request["max_tokens"] == 8  # PAGE_MAX_TOKENS caps the budget


def test_the_client_max_tokens_caps_a_page_and_its_sampling_is_not_forwarded(
    make_gateway: Callable[..., Process], proxy: RecordingProxy
) -> None:
    gateway = make_gateway(upstream_port=proxy.port, prompt_mode="ocrflux", page_retries=1)
    proxy.clear()
    client: openai.OpenAI = sdk(gateway.url)
    raw = client.chat.completions.with_raw_response.create(
        model="ocrflux",
        messages=image_message([png_data_url(300, 200)], text=""),  # type: ignore[arg-type]
        max_tokens=6,
        temperature=0.9,
        top_p=0.5,
        seed=7,
    )
    assert raw.status_code == 200
    calls = proxy.chat_calls()
    assert [c.status for c in calls] == [200, 200], [c.response for c in calls]
    assert [c.request["temperature"] for c in calls] == [0.0, 0.1]
    for call in calls:
        assert call.request["max_tokens"] == 6
        assert (call.request["top_p"], call.request["top_k"]) == (1.0, -1)
        assert "seed" not in call.request
        assert sent_size(call) == (1024, 682)
        assert call.response["usage"]["completion_tokens"] <= 6


def test_a_budget_past_the_room_is_clamped_and_one_past_the_context_is_the_clients_400(
    vllm: RealVLLM, page_call: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    # vLLM 0.32 clamps a max_tokens past the room the prompt leaves (so a page budget from an
    # estimate that is too low could only shorten the answer); an end-of-turn bias makes the
    # call answer at once instead of generating thousands of tokens on a CPU.
    room = vllm.max_model_len - page_call.response["usage"]["prompt_tokens"]
    end = tokenize(vllm, prompt="<|im_end|>", add_special_tokens=False)["tokens"][0]
    clamped = httpx.post(
        f"{vllm.url}/v1/chat/completions",
        json={**page_call.request, "max_tokens": room + 1, "logit_bias": {str(end): 100}},
        timeout=120,
    )
    assert clamped.status_code == 200, clamped.text
    # One past the whole context is refused, and recognised as the client's own budget: the
    # engine answers the client with it (no re-ask can change it).
    too_many = vllm.max_model_len + 1
    refused = httpx.post(
        f"{vllm.url}/v1/chat/completions",
        json={**page_call.request, "max_tokens": too_many},
        timeout=120,
    )
    with capsys.disabled():
        print(f"\nvLLM on max_tokens {too_many}: {refused.status_code} {refused.text}")
    assert refused.status_code == 400
    assert is_request_error(upstream_error(refused.status_code, refused.content))
