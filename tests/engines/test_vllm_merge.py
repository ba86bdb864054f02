"""The vLLM engine's merge calls with a scripted upstream: layout, re-asks, answers as data."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pybase64
from PIL import Image

from ocrflux.engines.base import PageJob
from ocrflux.engines.vllm_merge import BLANK_IMAGE_URL, MergeAsker
from ocrflux.errors import APIError
from ocrflux.format.page import build_element_merge_detect_prompt, build_html_table_merge_prompt
from ocrflux.settings import Settings

JOB = PageJob("req")
TABLE = "<table><tr><td>1</td></tr></table>"


class Upstream:
    """Answers each call with the next scripted content (or raises a scripted APIError)."""

    def __init__(self, *answers: str | APIError) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    async def chat(self, body: bytes, request_id: str, **_: Any) -> dict[str, Any]:
        self.bodies.append(orjson.loads(body))
        answer = self.answers.pop(0)
        if isinstance(answer, APIError):
            raise answer
        usage = {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}
        return {"choices": [{"message": {"content": answer}}], "usage": usage}


def asker(upstream: Upstream, retries: int = 2) -> MergeAsker:
    return MergeAsker(Settings(page_retries=retries), upstream)  # type: ignore[arg-type]


async def test_a_merge_call_is_text_first_with_a_black_28px_image() -> None:
    upstream = Upstream("[(0, 0)]")
    answer = await asker(upstream).detect_merges(["a-"], ["b"], JOB)
    assert answer.pairs == [(0, 0)]
    (body,) = upstream.bodies
    text, image = body["messages"][0]["content"]
    assert text == {"type": "text", "text": build_element_merge_detect_prompt(["a-"], ["b"])}
    assert image == {"type": "image_url", "image_url": {"url": BLANK_IMAGE_URL}}
    pixels = Image.open(io.BytesIO(pybase64.b64decode(BLANK_IMAGE_URL.split(",")[1])))
    assert (pixels.size, pixels.convert("RGB").getextrema()) == ((28, 28), ((0, 0),) * 3)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.0, 1.0, -1)
    assert 0 < body["max_tokens"] < Settings().max_model_len


async def test_an_unreadable_answer_is_asked_again_hotter_and_an_empty_list_is_final() -> None:
    upstream = Upstream("Sure! The pairs are (0, 0).", "[]", "[(0, 0)]")
    answer = await asker(upstream).detect_merges(["a"], ["b"], JOB)
    assert answer.pairs == []
    assert [b["temperature"] for b in upstream.bodies] == [0.0, 0.1]
    assert answer.usage.total_tokens == 2 * 105


async def test_hostile_answers_are_never_run_and_end_as_no_merge() -> None:
    hostile = "__import__('os').system('echo pwned')"
    upstream = Upstream(hostile, hostile, hostile)
    answer = await asker(upstream).detect_merges(["a"], ["b"], JOB)
    assert answer.pairs == [] and len(upstream.bodies) == 3


async def test_table_merge_takes_one_table_and_gives_up_after_the_re_asks() -> None:
    merged = "<table><tr><td>1</td></tr><tr><td>2</td></tr></table>"
    upstream = Upstream("not a table", merged)
    answer = await asker(upstream).merge_tables(TABLE, TABLE, JOB)
    assert answer.table == merged
    sent = upstream.bodies[0]["messages"][0]["content"][0]["text"]
    assert sent == build_html_table_merge_prompt(TABLE, TABLE)
    give_up = Upstream("x", "y")
    assert (await asker(give_up, retries=1).merge_tables(TABLE, TABLE, JOB)).table is None


async def test_a_failed_call_means_no_merge_never_a_failed_document() -> None:
    upstream = Upstream(APIError(502, "boom", code="upstream_error"))
    answer = await asker(upstream).detect_merges(["a"], ["b"], JOB)
    assert answer.pairs == [] and answer.usage.total_tokens == 0


async def test_a_prompt_too_long_for_the_context_is_not_sent() -> None:
    upstream = Upstream()
    long_page = ["word " * 20_000]
    answer = await asker(upstream).detect_merges(long_page, ["b"], JOB)
    assert answer.pairs == [] and upstream.bodies == []
