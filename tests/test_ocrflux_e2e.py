"""End to end in ocrflux mode: page prompt per image, decoding, retries, rotation, shaping."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from PIL import Image, ImageDraw

from ocrflux.page_format import build_page_prompt
from tests.support import FakeVLLMProcess, Process

FIXTURES = Path(__file__).parent / "fixtures" / "pages"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def page_image(width: int, height: int) -> str:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle((10, 10, width // 2, 40), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def page_request(*sizes: tuple[int, int], **extra: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Read these pages."}]
    parts += [{"type": "image_url", "image_url": {"url": page_image(w, h)}} for w, h in sizes]
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": parts}], **extra}


def post(gateway: Process, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30)


def summed_usage(fake: FakeVLLMProcess) -> dict[str, int]:
    total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for request in fake.requests():
        for key in total:
            total[key] += request["usage"][key]
    return total


def test_one_page_gets_the_trained_prompt_and_markdown_back(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_answers={"600x800": [english["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    (sent,) = fake.requests()
    (message,) = sent["body"]["messages"]
    assert message["role"] == "user"
    image_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": build_page_prompt()}
    assert (image_part["image"]["width"], image_part["image"]["height"]) == (600, 800)
    assert body["usage"] == summed_usage(fake)
    assert "x-ocrflux-fallback-pages" not in response.headers


def test_pages_run_concurrently_and_join_in_order(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    names = ["english_page", "chinese_page", "table_spans"]
    sizes = [(600, 800), (601, 800), (602, 800)]
    answers = {f"{w}x{h}": [fixture(n)["answer"]] for n, (w, h) in zip(names, sizes, strict=True)}
    # Each page takes 0.4 s upstream; three in sequence would take 1.2 s.
    fake.control(page_answers=answers, delay=0.4)
    response = post(ocrflux_gateway, page_request(*sizes))
    assert response.elapsed.total_seconds() < 1.1
    expected = "\n\n".join(fixture(n)["expected"]["markdown"] for n in names)
    assert response.json()["choices"][0]["message"]["content"] == expected
    assert response.json()["usage"] == summed_usage(fake)


def test_rotated_page_is_turned_and_asked_again(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(
        page_answers={
            "800x600": [fixture("rotated_page")["answer"]],
            "600x800": [english["answer"]],
        }
    )
    response = post(ocrflux_gateway, page_request((800, 600)))
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    sizes = [(r["images"][0]["width"], r["images"][0]["height"]) for r in fake.requests()]
    assert sizes == [(800, 600), (600, 800)]
    assert response.json()["usage"] == summed_usage(fake)


def test_invalid_answer_is_asked_again_with_a_higher_temperature(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_answers={"600x800": [fixture("invalid_json")["answer"], english["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    assert [r["body"]["temperature"] for r in fake.requests()] == [0.0, 0.1]
    # Without these vLLM applies the model's generation_config (top_k 1): no sampling at all.
    for sent in fake.requests():
        assert (sent["body"]["top_k"], sent["body"]["top_p"]) == (-1, 1.0)
        assert sent["body"]["repetition_penalty"] == 1.0
    assert "x-ocrflux-fallback-pages" not in response.headers


def test_client_sampling_fields_override_the_toolkit_defaults(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(page_answers={"600x800": [fixture("english_page")["answer"]]})
    post(ocrflux_gateway, page_request((600, 800), top_k=20, seed=3, stop=["x"], max_tokens=99))
    body = fake.requests()[0]["body"]
    assert (body["top_k"], body["top_p"], body["seed"], body["max_tokens"]) == (20, 1.0, 3, 99)
    assert "stop" not in body


def test_page_that_never_decodes_falls_back_to_raw_text_and_is_marked(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    invalid = fixture("invalid_json")
    fake.control(
        page_answers={
            "601x800": [invalid["answer"]],
            "600x800": [fixture("english_page")["answer"]],
        }
    )
    response = post(ocrflux_gateway, page_request((600, 800), (601, 800)))
    assert response.status_code == 200
    assert response.headers["x-ocrflux-fallback-pages"] == "2"
    content = response.json()["choices"][0]["message"]["content"]
    assert content.endswith(invalid["expected"]["markdown"])
    temperatures = sorted(
        r["body"]["temperature"] for r in fake.requests() if r["images"][0]["width"] == 601
    )
    assert temperatures == [0.0, 0.1, 0.2]  # PAGE_RETRIES defaults to 2
    assert response.json()["usage"] == summed_usage(fake)


@pytest.mark.parametrize("name", ["table_spans", "form_checkboxes", "chinese_page"])
@pytest.mark.parametrize("fmt", ["markdown", "list", "json"])
def test_output_format_field_chooses_the_shape(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, name: str, fmt: str
) -> None:
    page = fixture(name)
    fake.control(page_answers={"600x800": [page["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800), output_format=fmt))
    content = response.json()["choices"][0]["message"]["content"]
    if fmt == "json":
        assert orjson.loads(content) == page["expected"]["json"]
    else:
        assert content == page["expected"][fmt]
    assert "output_format" not in fake.requests()[0]["body"]


def test_seed_request_with_the_openai_sdk_returns_a_checkbox_list(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    seed = fixture("seed_form_zh")
    fake.control(page_answers={"700x990": [seed["answer"]]})
    client = openai.OpenAI(base_url=f"{ocrflux_gateway.url}/v1", api_key="sk-none", max_retries=0)
    reply = client.chat.completions.create(
        model="Qwen/Qwen2.5-VL-32B-Instruct",
        messages=[
            {"role": "system", "content": seed["system_prompt"]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": seed["user_text"]},
                    {"type": "image_url", "image_url": {"url": page_image(700, 990)}},
                ],
            },
        ],
    )
    content = reply.choices[0].message.content
    assert content == seed["expected"]["list"]
    assert "- 二、入职材料\n  - [√] 身份证复印件" in content
    assert reply.model == "Qwen/Qwen2.5-VL-32B-Instruct"


def test_streaming_sends_pages_as_chunks_with_summed_usage(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    names = ["english_page", "chinese_page"]
    fake.control(
        page_answers={
            "600x800": [fixture(names[0])["answer"]],
            "601x800": [fixture(names[1])["answer"]],
        }
    )
    client = openai.OpenAI(base_url=f"{ocrflux_gateway.url}/v1", api_key="x", max_retries=0)
    body = page_request((600, 800), (601, 800))
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=body["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "\n\n".join(fixture(n)["expected"]["markdown"] for n in names)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 2
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == summed_usage(fake)
    assert {c.model for c in chunks} == {"m"}


def test_text_only_request_is_forwarded_as_is(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    messages = [{"role": "system", "content": "Translate."}, {"role": "user", "content": "Hallo"}]
    response = post(ocrflux_gateway, {"model": "m", "messages": messages})
    assert response.status_code == 200
    assert fake.requests()[0]["body"]["messages"] == messages


def test_passthrough_checkbox_setting(make_gateway: Any, fake: FakeVLLMProcess) -> None:
    plain = make_gateway(prompt_mode="passthrough")
    normalising = make_gateway(prompt_mode="passthrough", passthrough_checkboxes="true")
    fake.control(answer="- ☑ done\n- ☐ todo")
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert post(plain, body).json()["choices"][0]["message"]["content"] == "- ☑ done\n- ☐ todo"
    normalised = post(normalising, body).json()["choices"][0]["message"]["content"]
    assert normalised == "- [√] done\n- [ ] todo"
