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

from ocrflux.engines.vllm_calls import CHAT_TEMPLATE_TEXT
from ocrflux.format.page import build_page_prompt
from ocrflux.intake.images import toolkit_size
from ocrflux.intake.tokens import estimate_text_tokens, image_tokens
from tests.documents.pdfs import page_json
from tests.support import FakeVLLMProcess, Process

FIXTURES = Path(__file__).parent / "fixtures" / "pages"
RED = (255, 0, 0)
# Page sizes as the toolkit sends them (image_utils.get_page_image at 1024): 600x800 -> 768x1024.
PAGE = "768x1024"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def page_image(width: int, height: int) -> str:
    """A white page with a line of "text" and a red top-left corner (to follow rotations)."""
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle((10, 10, width // 2, 40), fill="black")
    image.paste(RED, (0, 0, max(1, width // 8), max(1, height // 8)))
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
    fake.control(page_answers={PAGE: [english["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    (sent,) = fake.requests()
    (message,) = sent["body"]["messages"]
    assert message["role"] == "user"
    # The toolkit's order: the prompt first, then the page (upscaled to the trained 1024).
    text_part, image_part = message["content"]
    assert text_part == {"type": "text", "text": build_page_prompt()}
    assert (image_part["image"]["width"], image_part["image"]["height"]) == (768, 1024)
    assert body["usage"] == summed_usage(fake)
    assert "x-ocrflux-fallback-pages" not in response.headers


def test_pages_run_concurrently_and_join_in_order(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    names = ["english_page", "chinese_page", "table_spans"]
    sizes = [(600, 800), (601, 800), (602, 800)]  # sent as 768, 769 and 770 x 1024
    keys = ["768x1024", "769x1024", "770x1024"]
    answers = {key: [fixture(n)["answer"]] for n, key in zip(names, keys, strict=True)}
    # Each page takes 0.4 s upstream; three in sequence would take 1.2 s.
    fake.control(page_answers=answers, delay=0.4)
    response = post(ocrflux_gateway, page_request(*sizes))
    assert response.elapsed.total_seconds() < 1.1
    expected = "\n\n".join(fixture(n)["expected"]["markdown"] for n in names)
    assert response.json()["choices"][0]["message"]["content"] == expected
    assert response.json()["usage"] == summed_usage(fake)


def test_rotated_page_is_turned_clockwise_and_asked_again(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(
        page_answers={
            "1024x768": [fixture("rotated_page")["answer"]],  # rotation_correction: 90
            PAGE: [english["answer"]],
        }
    )
    response = post(ocrflux_gateway, page_request((800, 600)))
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    first, second = fake.requests()
    assert (first["images"][0]["width"], first["images"][0]["height"]) == (1024, 768)
    assert (second["images"][0]["width"], second["images"][0]["height"]) == (768, 1024)
    # The red top-left corner went to the top right: turned 90 degrees clockwise, as the
    # toolkit's image.rotate(-90, expand=True).
    assert first["images"][0]["corners"][0] == list(RED)
    top_left, top_right, bottom_left, _ = second["images"][0]["corners"]
    assert top_right == list(RED) and top_left != list(RED) and bottom_left != list(RED)
    assert response.json()["usage"] == summed_usage(fake)


def test_invalid_answer_is_asked_again_with_a_higher_temperature(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_answers={PAGE: [fixture("invalid_json")["answer"], english["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    assert [r["body"]["temperature"] for r in fake.requests()] == [0.0, 0.1]
    # Without these vLLM applies the model's generation_config (top_k 1): no sampling at all.
    for sent in fake.requests():
        assert (sent["body"]["top_k"], sent["body"]["top_p"]) == (-1, 1.0)
        assert sent["body"]["repetition_penalty"] == 1.0
    assert "x-ocrflux-fallback-pages" not in response.headers


def test_page_calls_sample_as_the_toolkit_whatever_the_client_sends(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_answers={PAGE: [fixture("invalid_json")["answer"], english["answer"]]})
    client_sampling = {"temperature": 0.5, "top_p": 0.8, "top_k": 20, "seed": 3, "stop": ["x"]}
    response = post(
        ocrflux_gateway,
        page_request((600, 800), **client_sampling, repetition_penalty=1.2, max_tokens=99),
    )
    assert response.status_code == 200
    first, second = (r["body"] for r in fake.requests())
    # Greedy first, then 0.1: not 0.5 and 0.6.
    assert (first["temperature"], second["temperature"]) == (0.0, 0.1)
    for body in (first, second):
        assert (body["top_p"], body["top_k"], body["repetition_penalty"]) == (1.0, -1, 1.0)
        assert "seed" not in body and "stop" not in body
        assert body["max_tokens"] == 99  # the client's max_tokens is honoured, as a cap


def test_page_that_never_decodes_falls_back_to_raw_text_and_is_marked(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    invalid = fixture("invalid_json")
    fake.control(
        page_answers={
            "769x1024": [invalid["answer"]],
            PAGE: [fixture("english_page")["answer"]],
        }
    )
    response = post(ocrflux_gateway, page_request((600, 800), (601, 800)))
    assert response.status_code == 200
    assert response.headers["x-ocrflux-fallback-pages"] == "2"
    content = response.json()["choices"][0]["message"]["content"]
    assert content.endswith(invalid["expected"]["markdown"])
    temperatures = sorted(
        r["body"]["temperature"] for r in fake.requests() if r["images"][0]["width"] == 769
    )
    assert temperatures == [0.0, 0.1, 0.2, 0.3]  # PAGE_RETRIES defaults to 3
    assert response.json()["usage"] == summed_usage(fake)


@pytest.mark.parametrize("name", ["table_spans", "form_checkboxes", "chinese_page"])
@pytest.mark.parametrize("fmt", ["markdown", "list", "json"])
def test_output_format_field_chooses_the_shape(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, name: str, fmt: str
) -> None:
    page = fixture(name)
    fake.control(page_answers={PAGE: [page["answer"]]})
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
    fake.control(page_answers={"724x1024": [seed["answer"]]})  # 700x990, sent at 1024
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
            PAGE: [fixture(names[0])["answer"]],
            "769x1024": [fixture(names[1])["answer"]],
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


# --- the toolkit's page request: size, budget, failures ------------------------------------------

# (sent as, by the toolkit's rule), worked out by hand from image_utils.get_page_image.
TOOLKIT_SIZES = {
    (300, 400): (768, 1024),  # small: upscaled, like the toolkit
    (2000, 3000): (682, 1024),  # large: 682.67 truncated, not rounded to 683
    (3000, 2000): (1024, 682),  # landscape
    (612, 792): (791, 1024),  # a Letter page at 72 dpi: 791.27
    (5000, 100): (1024, 20),  # extreme aspect ratios: 20.48 and 25.6
    (100, 4000): (25, 1024),
    (500, 500): (1024, 1024),  # square
}


def test_every_page_goes_at_the_toolkits_size_text_first_greedy_with_the_whole_budget(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer=fixture("english_page")["answer"])
    response = post(ocrflux_gateway, page_request(*TOOLKIT_SIZES, temperature=0.7))
    assert response.status_code == 200, response.text
    sent = fake.requests()
    sizes = sorted((r["images"][0]["width"], r["images"][0]["height"]) for r in sent)
    assert sizes == sorted(TOOLKIT_SIZES.values())
    text_tokens = estimate_text_tokens(CHAT_TEMPLATE_TEXT + build_page_prompt())
    for request in sent:
        body, image = request["body"], request["images"][0]
        assert [p["type"] for p in body["messages"][0]["content"]] == ["text", "image_url"]
        assert body["temperature"] == 0.0  # the client's 0.7 is not a page's temperature
        # No cap set: the answer may use all the context the prompt leaves (MAX_MODEL_LEN 8192).
        prompt = text_tokens + image_tokens(image["width"], image["height"]) + 2
        assert body["max_tokens"] == 8192 - prompt


def test_a_page_already_at_the_toolkit_size_is_forwarded_untouched(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(answer=fixture("english_page")["answer"])
    url = page_image(768, 1024)
    body = page_request()
    body["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": url}})
    assert post(ocrflux_gateway, body).status_code == 200
    (sent,) = fake.requests()
    assert sent["images"][0]["bytes"] == len(base64.b64decode(url.partition(",")[2]))


def test_a_client_max_tokens_that_leaves_no_room_for_the_page_is_a_400(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    response = post(ocrflux_gateway, page_request((600, 800), max_tokens=8000))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("max_tokens", "context_length_exceeded")
    assert "max_tokens is 8,000" in error["message"] and "8,192-token context" in error["message"]
    assert fake.requests() == []


def test_a_page_whose_first_call_fails_is_asked_again(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_failures={PAGE: [500]}, page_answers={PAGE: [english["answer"]]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    assert [r["body"]["temperature"] for r in fake.requests()] == [0.0, 0.1]
    assert "x-ocrflux-fallback-pages" not in response.headers


def test_a_page_that_keeps_failing_is_a_fallback_and_the_others_are_returned(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    english = fixture("english_page")
    fake.control(page_failures={"769x1024": [500] * 4}, page_answers={PAGE: [english["answer"]]})
    response = post(ocrflux_gateway, page_request((601, 800), (600, 800)))
    assert response.status_code == 200, response.text
    assert response.headers["x-ocrflux-fallback-pages"] == "1"
    assert response.json()["choices"][0]["message"]["content"] == english["expected"]["markdown"]
    failed = [r for r in fake.requests() if r["images"][0]["width"] == 769]
    assert [r["body"]["temperature"] for r in failed] == [0.0, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("stream", [False, True])
def test_when_no_page_can_be_read_the_client_gets_a_502_never_a_500(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, stream: bool
) -> None:
    fake.control(page_failures={PAGE: [500] * 4, "769x1024": [500] * 4})
    response = post(ocrflux_gateway, page_request((600, 800), (601, 800), stream=stream))
    if stream:  # the error event, then [DONE]
        *_, last_event, done = response.text.split("data: ")
        assert done == "[DONE]\n\n"
        error = json.loads(last_event)["error"]
    else:
        assert response.status_code == 502
        error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")
    assert "the model server failed (HTTP 500)" in error["message"]
    assert len(fake.requests()) == 8


def test_table_cells_with_a_bare_ampersand_survive(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    table = "<table><tr><td>R&D</td><td><l></td></tr><tr><td>AT&T</td><td>Q&amp;A</td></tr></table>"
    answer = json.dumps({**fixture("english_page")["page_response"], "natural_text": table})
    fake.control(page_answers={PAGE: [answer]})
    response = post(ocrflux_gateway, page_request((600, 800)))
    assert response.json()["choices"][0]["message"]["content"] == (
        '<table><tr><td colspan="2">R&D</td></tr><tr><td>AT&T</td><td>Q&amp;A</td></tr></table>'
    )


def raw_events(gateway: Process, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a streamed answer, exactly as sent (no SDK in between)."""
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json={**body, "stream": True}, timeout=30
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    assert text.endswith("\n\n")
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def test_pages_join_in_page_order_when_the_first_finishes_last(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    names = ["english_page", "chinese_page", "table_spans"]
    sizes = [(600, 800), (601, 800), (602, 800)]
    keys = ["768x1024", "769x1024", "770x1024"]  # as sent (the toolkit's page size)
    # Page 1 answers last, page 3 first.
    fake.control(
        page_answers={k: [fixture(n)["answer"]] for k, n in zip(keys, names, strict=True)},
        page_delays=dict(zip(keys, [0.6, 0.3, 0.0], strict=True)),
    )
    expected = [fixture(n)["expected"]["markdown"] for n in names]
    response = post(ocrflux_gateway, page_request(*sizes))
    assert response.json()["choices"][0]["message"]["content"] == "\n\n".join(expected)
    events = raw_events(ocrflux_gateway, page_request(*sizes))
    texts = [
        orjson.loads(e)["choices"][0]["delta"].get("content")
        for e in events
        if e != "[DONE]" and orjson.loads(e)["choices"]
    ]
    assert [t for t in texts if t] == [expected[0], "\n\n" + expected[1], "\n\n" + expected[2]]


def test_ocrflux_stream_ends_with_done_after_the_final_chunk(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(page_answers={PAGE: [fixture("english_page")["answer"]]})
    body = page_request((600, 800), stream_options={"include_usage": True})
    events = raw_events(ocrflux_gateway, body)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    usage = orjson.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    final = orjson.loads(events[-3])
    assert final["choices"][0]["finish_reason"] == "stop"


def corrupt_page(width: int, height: int) -> str:
    """A PNG with a valid header whose pixel data is cut short: only decoding finds out."""
    image = Image.effect_noise((width, height), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    iend = data[-12:]
    cut = data[: len(data) // 3] + iend
    return "data:image/png;base64," + base64.b64encode(cut).decode()


def assert_undecodable_page(response: httpx.Response) -> None:
    """A 400 invalid_image naming the page's part: its pixels could not be decoded."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (
        "invalid_image",
        "messages[0].content[1].image_url.url",
    )
    assert "could not be decoded" in error["message"]


def test_corrupt_pixels_and_a_rotation_request_are_a_400_never_a_500(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(page_answers={"1024x768": [fixture("rotated_page")["answer"]]})
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "Read."},
        {"type": "image_url", "image_url": {"url": corrupt_page(1024, 768)}},  # sent as is
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    response = post(ocrflux_gateway, body)
    assert_undecodable_page(response)
    events = raw_events(ocrflux_gateway, body)
    assert events[-1] == "[DONE]"
    assert orjson.loads(events[-2])["error"]["code"] == "invalid_image"


def test_a_page_that_cannot_be_decoded_to_shrink_it_is_an_invalid_image(
    make_gateway: Any, fake: FakeVLLMProcess
) -> None:
    # MAX_MODEL_LEN 2048: a 1024x768 page leaves under 1,024 tokens for its answer, so the
    # engine shrinks it first; its pixels are corrupt, so that fails. Not the context's fault.
    gateway = make_gateway(prompt_mode="ocrflux", max_model_len=2048)
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "Read."},
        {"type": "image_url", "image_url": {"url": corrupt_page(1024, 768)}},
    ]
    response = post(gateway, {"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert_undecodable_page(response)
    assert fake.requests() == []


def _coloured_page(width: int, colour: tuple[int, int, int]) -> str:
    """A 800-high page whose top-left square has `colour` (the fake keys answers by it)."""
    image = Image.new("RGB", (width, 800), "white")
    image.paste(colour, (0, 0, 80, 80))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_twelve_images_join_in_page_order_and_fallbacks_are_numbered_in_order(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    # Twelve images (more than 9: page 10 must not sort before page 2), the first answering
    # last; pages 3 and 12 never decode.
    colours = [(10 * k + 5, 100, 200) for k in range(12)]
    widths = [600 + 10 * k for k in range(12)]
    sent = [toolkit_size(w, 800, 1024) for w in widths]  # the sizes the fake will see
    assert len(set(sent)) == 12
    answers = {
        "#{:02x}{:02x}{:02x}".format(*c): [page_json(f"Image {k + 1} of twelve.")]
        for k, c in enumerate(colours)
    }
    answers["#1964c8"] = ["not page json"]  # page 3: colour (25, 100, 200)
    answers["#7364c8"] = ["not page json either"]  # page 12: colour (115, 100, 200)
    fake.control(
        page_answers=answers,
        page_delays={f"{w}x{h}": 0.04 * (12 - k) for k, (w, h) in enumerate(sent)},
    )
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": _coloured_page(w, c)}}
        for w, c in zip(widths, colours, strict=True)
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    response = post(ocrflux_gateway, {**body, "output_format": "markdown"})
    assert response.status_code == 200, response.text
    assert response.headers["x-ocrflux-fallback-pages"] == "3,12"
    assert response.json()["choices"][0]["message"]["content"] == (
        "Image 1 of twelve.\n\nImage 2 of twelve.\n\nnot page json\n\nImage 4 of twelve.\n\n"
        "Image 5 of twelve.\n\nImage 6 of twelve.\n\nImage 7 of twelve.\n\n"
        "Image 8 of twelve.\n\nImage 9 of twelve.\n\nImage 10 of twelve.\n\n"
        "Image 11 of twelve.\n\nnot page json either"
    )
