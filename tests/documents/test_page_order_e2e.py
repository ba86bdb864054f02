"""Page order with more than 9 pages (10 must not sort before 2), and merge answers applied to
their own page pair whatever order they come back in: `/v1/ocr`, streamed, and chat."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from ocrflux.format.page import build_element_merge_detect_prompt
from tests.documents.pdfs import Scenario, distinct_sizes
from tests.support import FakeVLLMProcess, Process

# Twelve pages. Pages 0-9 are five sentences, each cut by a page break (even page: its start,
# odd page: its end); pages 10 and 11 stand alone. The model says "merge" for the pairs
# (0, 1), (2, 3), (4, 5), (6, 7), (8, 9) and "no merge" for the other six.
PAGES = (
    "Section 00 begins here and",
    "ends on page 01.",
    "Section 02 begins here and",
    "ends on page 03.",
    "Section 04 begins here and",
    "ends on page 05.",
    "Section 06 begins here and",
    "ends on page 07.",
    "Section 08 begins here and",
    "ends on page 09.",
    "Section 10 stands alone.",
    "Section 11 stands alone too.",
)
MERGED = (
    "Section 00 begins here and ends on page 01.\n\n"
    "Section 02 begins here and ends on page 03.\n\n"
    "Section 04 begins here and ends on page 05.\n\n"
    "Section 06 begins here and ends on page 07.\n\n"
    "Section 08 begins here and ends on page 09.\n\n"
    "Section 10 stands alone.\n\n"
    "Section 11 stands alone too."
)
UNMERGED = "\n\n".join(PAGES)  # page 0, 1, 2, ..., 9, 10, 11: not 0, 1, 10, 11, 2, ...
SCENARIO = Scenario(
    "twelve_pages",
    PAGES,
    {(k, k + 1): "[(0, 0)]" if k % 2 == 0 and k < 10 else "[]" for k in range(11)},
    {},
    MERGED,
    sizes=tuple(distinct_sizes(12)),
)


def teach(fake: FakeVLLMProcess) -> None:
    """Page answers, and merge-detect answers that come back in reverse: the call for pair
    (k, k + 1) waits 0.06 s x (11 - k), so pair (10, 11) answers first and (0, 1) last. The
    first pages are the slowest to be read too."""
    rules: list[dict[str, Any]] = [
        {
            "contains": [build_element_merge_detect_prompt([PAGES[k]], [PAGES[k + 1]])],
            "answers": [answer],
            "delay": 0.06 * (11 - k),
        }
        for (k, _), answer in SCENARIO.detect.items()
    ]
    page_keys = [spec.key() for spec in SCENARIO.page_specs()]
    assert len(set(page_keys)) == 12
    fake.control(
        page_answers=SCENARIO.page_answers(),
        prompt_answers=rules,
        page_delays={key: 0.05 * (12 - n) for n, key in enumerate(page_keys)},
    )


def document(**extra: Any) -> dict[str, Any]:
    url = "data:application/pdf;base64," + base64.b64encode(SCENARIO.pdf()).decode()
    return {"document": {"type": "document_url", "document_url": url}, **extra}


def test_twelve_pages_come_back_in_page_order_and_merged_pair_by_pair(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    teach(fake)
    response = httpx.post(f"{ocrflux_gateway.url}/v1/ocr", json=document(), timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["document_text"] == MERGED
    assert [p["index"] for p in body["pages"]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [p["markdown"] for p in body["pages"]] == list(PAGES)
    assert list(body["page_texts"]) == [str(n) for n in range(12)]
    # The merge-detect calls did finish in reverse (the fake's delays worked).
    detect = [c for c in fake.requests() if "Previous page:" in _text(c)]
    assert len(detect) == 11
    finished = sorted(detect, key=lambda c: c["answered_at"])
    assert [_pair(c) for c in finished] == list(range(10, -1, -1))


def test_twelve_pages_unmerged_keep_page_order(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    teach(fake)
    body = httpx.post(
        f"{ocrflux_gateway.url}/v1/ocr", json=document(skip_cross_page_merge=True), timeout=60
    ).json()
    assert body["document_text"] == UNMERGED
    assert body["document_text"].index("Section 02") < body["document_text"].index("Section 10")


def test_twelve_pages_stream_in_page_order(ocrflux_gateway: Process, fake: FakeVLLMProcess) -> None:
    teach(fake)
    events = []
    with httpx.stream(
        "POST", f"{ocrflux_gateway.url}/v1/ocr", json=document(stream=True), timeout=60
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
    pages = [e for e in events if e["type"] == "page"]
    assert [e["index"] for e in pages] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [e["done"] for e in pages] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert events[-1]["type"] == "result" and events[-1]["document_text"] == MERGED


@pytest.mark.parametrize("stream", [False, True])
def test_chat_gets_the_twelve_pages_merged_in_page_order(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, stream: bool
) -> None:
    teach(fake)
    url = document()["document"]["document_url"]
    body = {
        "model": "m",
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": url}}]}],
    }
    response = httpx.post(f"{ocrflux_gateway.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    if stream:
        chunks = [
            orjson.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    else:
        text = response.json()["choices"][0]["message"]["content"]
    assert text == MERGED


def _text(call: dict[str, Any]) -> str:
    content = call["body"]["messages"][0]["content"]
    return "".join(part.get("text", "") for part in content if part["type"] == "text")


def _pair(call: dict[str, Any]) -> int:
    """k of the pair (k, k + 1) a merge-detect call is about."""
    text = _text(call)
    return next(k for k in range(11) if build_element_merge_detect_prompt(
        [PAGES[k]], [PAGES[k + 1]]) in text)  # fmt: skip
