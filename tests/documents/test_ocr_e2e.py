"""`POST /v1/ocr` end to end: the gateway process, the fake vLLM, generated PDFs, real clients."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ocrflux.format.merge import page_elements
from ocrflux.format.page import build_element_merge_detect_prompt
from tests.documents.pdfs import (
    SCENARIOS,
    Page,
    Scenario,
    corrupt_pdf,
    encrypted_pdf,
    make_pdf,
    multipage_tiff,
    page_json,
    zero_page_pdf,
)
from tests.support import FakeVLLMProcess, Process, start_fake_vllm

PDF_URL = "data:application/pdf;base64,"


def pdf_url(data: bytes) -> str:
    return PDF_URL + base64.b64encode(data).decode()


def feed(fake: FakeVLLMProcess, scenario: Scenario) -> None:
    """Teach the fake the scenario's page, merge-detect and table-merge answers."""
    rules: list[dict[str, Any]] = [
        {"contains": [prompt], "answers": [answer]}
        for prompt, answer in {**scenario.detect_prompts(), **scenario.table_prompts()}.items()
    ]
    rules.append({"contains": ["Previous page:"], "answers": ["[]"]})
    fake.control(page_answers=scenario.page_answers(), prompt_answers=rules)


def prompt(call: dict[str, Any]) -> str:
    """The text parts of a recorded call."""
    content = call["body"]["messages"][0]["content"]
    return "".join(part.get("text", "") for part in content if part["type"] == "text")


def page_calls(fake: FakeVLLMProcess) -> list[dict[str, Any]]:
    return [c for c in fake.requests() if prompt(c).startswith("Below is the image")]


def ocr(gateway: Process, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/ocr", json=body, timeout=60, **kw)


def document(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"model": "mistral-ocr-latest", "document": {"type": "document_url",
            "document_url": pdf_url(data)}, **extra}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_documents_come_back_merged_as_the_toolkit_would(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, name: str
) -> None:
    scenario = SCENARIOS[name]
    feed(fake, scenario)
    response = ocr(ocrflux_gateway, document(scenario.pdf()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["document_text"] == scenario.document_text
    assert body["model"] == "mistral-ocr-latest"
    assert body["num_pages"] == len(scenario.pages)
    assert body["fallback_pages"] == []
    assert [p["index"] for p in body["pages"]] == list(range(len(scenario.pages)))
    assert [p["markdown"] for p in body["pages"]] == list(scenario.pages)
    assert body["page_texts"] == {str(i): text for i, text in enumerate(scenario.pages)}
    assert body["usage_info"]["pages_processed"] == len(scenario.pages)
    # usage is the sum over every upstream call (pages, merge detection, table merges).
    calls = fake.requests()
    assert body["usage"]["total_tokens"] == sum(c["usage"]["total_tokens"] for c in calls)


def test_merge_detect_prompt_is_the_toolkits_and_sent_text_first(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["table_two_pages"]
    feed(fake, scenario)
    assert ocr(ocrflux_gateway, document(scenario.pdf())).status_code == 200
    expected = build_element_merge_detect_prompt(
        page_elements(scenario.pages[0]), page_elements(scenario.pages[1])
    )
    detect = [c for c in fake.requests() if "Previous page:" in prompt(c)]
    assert len(detect) == 1
    content = detect[0]["body"]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": expected}
    assert content[1]["type"] == "image_url"
    assert (content[1]["image"]["width"], content[1]["image"]["height"]) == (28, 28)
    assert content[1]["image"]["corner"] == "#000000"  # the toolkit's black 28x28 image
    assert detect[0]["body"]["temperature"] == 0.0


def test_a_hostile_merge_answer_is_data_not_code(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    scenario = SCENARIOS["hyphen"]
    marker = tmp_path / "pwned"
    hostile = f"__import__('os').system('touch {marker}')"
    fake.control(
        page_answers=scenario.page_answers(),
        prompt_answers=[{"contains": ["Previous page:"], "answers": [hostile]}],
    )
    response = ocr(ocrflux_gateway, document(scenario.pdf()))
    assert response.status_code == 200, response.text
    assert not marker.exists()
    # No merge: the pages are simply joined.
    assert response.json()["document_text"] == "\n\n".join(scenario.pages)


def test_skip_cross_page_merge_makes_no_merge_calls(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["hyphen"]
    feed(fake, scenario)
    response = ocr(ocrflux_gateway, document(scenario.pdf(), skip_cross_page_merge=True))
    assert response.json()["document_text"] == "\n\n".join(scenario.pages)
    assert len(fake.requests()) == len(scenario.pages)


@pytest.mark.parametrize(("pages", "expected"), [([0, 2], [0, 2]), ("1-2", [1, 2]), ("2", [2])])
def test_page_selection_is_zero_based(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, pages: Any, expected: list[int]
) -> None:
    scenario = SCENARIOS["table_three_pages"]
    feed(fake, scenario)
    body = ocr(ocrflux_gateway, document(scenario.pdf(), pages=pages)).json()
    assert [p["index"] for p in body["pages"]] == expected
    assert body["num_pages"] == 3
    assert len(page_calls(fake)) == len(expected)


def test_fallback_pages_are_listed_and_empty(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["no_merge"]
    answers = scenario.page_answers()
    second = list(answers)[1]
    answers[second] = ["not page json"]
    fake.control(page_answers=answers)
    body = ocr(ocrflux_gateway, document(scenario.pdf())).json()
    assert body["fallback_pages"] == [1]
    assert body["pages"][1]["markdown"] == ""
    assert body["page_texts"] == {"0": scenario.pages[0]}
    assert body["document_text"] == scenario.pages[0]


def test_the_error_rate_limit_fails_the_document(make_gateway: Any, fake: FakeVLLMProcess) -> None:
    gateway = make_gateway(max_page_error_rate=0.4, page_retries=0)
    scenario = SCENARIOS["no_merge"]
    answers = scenario.page_answers()
    answers[list(answers)[1]] = ["not page json"]
    fake.control(page_answers=answers)
    response = ocr(gateway, document(scenario.pdf()))
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "too_many_fallback_pages"
    assert "1 of 2 pages" in error["message"]


def test_an_error_rate_exactly_at_the_limit_passes_and_just_over_it_fails(
    make_gateway: Any, fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(max_page_error_rate=0.25, page_retries=0)
    pages = [Page(600 + 10 * i, 800, (f"Page {i}.",)) for i in range(4)]
    answers = {page.key(): [page_json(f"Page {i}.")] for i, page in enumerate(pages)}
    answers[pages[1].key()] = ["not page json"]
    fake.control(page_answers=answers)
    # 1 of 4 pages is a fallback: 0.25, exactly MAX_PAGE_ERROR_RATE, is allowed.
    at_limit = ocr(gateway, document(make_pdf(pages)))
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["fallback_pages"] == [1]
    assert at_limit.json()["document_text"] == "Page 0.\n\nPage 2.\n\nPage 3."
    # 1 of 3: 0.33, over it.
    over = ocr(gateway, document(make_pdf(pages[:3])))
    assert over.status_code == 502, over.text
    assert over.json()["error"] == {
        "message": "1 of 3 pages could not be read, more than MAX_PAGE_ERROR_RATE=0.25 "
        "allows (fallback pages: 1)",
        "type": "server_error",
        "param": None,
        "code": "too_many_fallback_pages",
    }


def test_table_format_markdown_turns_plain_tables_into_pipe_tables(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["table_two_pages"]
    feed(fake, scenario)
    body = ocr(ocrflux_gateway, document(scenario.pdf(), table_format="markdown")).json()
    assert "<table>" not in body["document_text"]
    assert "| Year | Revenue | Staff |\n|---|---|---|\n| 2019 | 10 | 4 |" in body["document_text"]


def test_streaming_shows_progress_then_the_result(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["table_three_pages"]
    feed(fake, scenario)
    events = []
    with httpx.stream(
        "POST", f"{ocrflux_gateway.url}/v1/ocr", json=document(scenario.pdf(), stream=True),
        timeout=60,
    ) as response:  # fmt: skip
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds == ["page", "page", "page", "merge", "result"]
    assert [e["index"] for e in events[:3]] == [0, 1, 2]
    assert [(e["done"], e["total"]) for e in events[:3]] == [(1, 3), (2, 3), (3, 3)]
    assert events[-1]["document_text"] == scenario.document_text


def test_multipart_upload_with_curl(ocrflux_gateway: Process, fake: FakeVLLMProcess,
                                   tmp_path: Path) -> None:  # fmt: skip
    scenario = SCENARIOS["cjk"]
    feed(fake, scenario)
    path = tmp_path / "report.pdf"
    path.write_bytes(scenario.pdf())
    result = subprocess.run(
        ["curl", "-sS", "-F", f"file=@{path}", "-F", "pages=0-1", f"{ocrflux_gateway.url}/v1/ocr"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    body = orjson.loads(result.stdout)
    assert body["document_text"] == scenario.document_text
    assert body["usage_info"]["doc_size_bytes"] == path.stat().st_size


def test_image_and_multipage_tiff_documents(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    answers = {"768x1024": [page_json("tiff page")], "1024x768": [page_json("landscape")]}
    fake.control(page_answers=answers)
    tiff = multipage_tiff([(600, 800), (800, 600)])
    url = "data:image/tiff;base64," + base64.b64encode(tiff).decode()
    body = ocr(ocrflux_gateway, {"document": {"type": "document_url", "document_url": url}})
    assert body.status_code == 200, body.text
    pages = body.json()["pages"]
    assert [(p["dimensions"]["width"], p["dimensions"]["height"]) for p in pages] == [
        (768, 1024), (1024, 768)]  # fmt: skip
    assert [p["markdown"] for p in pages] == ["tiff page", "landscape"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (encrypted_pdf(), "password"),
        (corrupt_pdf(), "PDF"),
        (zero_page_pdf(), "no pages"),
        (b"hello, world", "send a PDF"),
    ],
)
def test_bad_documents_are_400s_that_say_why(
    ocrflux_gateway: Process, data: bytes, says: str
) -> None:
    response = ocr(ocrflux_gateway, document(data))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "document"
    assert says.lower() in error["message"].lower()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"pages": [7]}, "pages"),
        ({"pages": "2-1"}, "pages"),
        ({"document_annotation_format": {"type": "json_schema"}}, "document_annotation_format"),
        ({"bbox_annotation_format": {"type": "json_schema"}}, "bbox_annotation_format"),
        ({"extract_header": True}, "extract_header"),
        ({"table_format": "latex"}, "table_format"),
    ],
)
def test_bad_options_are_400s_naming_the_field(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, extra: dict[str, Any], param: str
) -> None:
    pdf = make_pdf([Page(612, 792, ("One page.",))])
    response = ocr(ocrflux_gateway, document(pdf, **extra))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_file_ids_and_missing_documents_are_refused(ocrflux_gateway: Process) -> None:
    file_doc = ocr(ocrflux_gateway, {"document": {"type": "file", "file_id": "file-abc"}})
    assert file_doc.status_code == 404, file_doc.text
    assert file_doc.json()["error"]["message"].startswith("No such file: 'file-abc'")
    assert file_doc.json()["error"]["param"] == "document.file_id"
    missing = ocr(ocrflux_gateway, {"model": "x"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "document"


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_pending_pages(
    make_gateway: Any, fake: FakeVLLMProcess, stream: bool
) -> None:
    gateway = make_gateway(pages_in_flight=2)
    pages = [Page(600 + 10 * i, 800, (f"Page {i}.",)) for i in range(8)]
    pdf = make_pdf(pages)
    answers = {page.key(): [page_json(f"Page {i}.")] for i, page in enumerate(pages)}
    fake.control(delay=0.6, page_answers=answers)
    with httpx.Client(timeout=30) as client:
        if stream:
            with client.stream("POST", f"{gateway.url}/v1/ocr",
                               json=document(pdf, stream=True)) as response:  # fmt: skip
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        break  # the first page is in: leave
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(f"{gateway.url}/v1/ocr", json=document(pdf), timeout=0.9)
    seen = len(fake.requests())
    time.sleep(2.0)  # three more service times: pages would keep coming if nothing stopped them
    assert len(fake.requests()) == seen
    assert seen <= 4, f"{seen} page calls for a client that left"


def test_pages_in_flight_bound_one_document(make_gateway: Any) -> None:
    fake = start_fake_vllm()  # its own: in-service counters are kept for the process's life
    try:
        gateway = make_gateway(upstream_port=fake.port, pages_in_flight=3)
        pages = [Page(600 + 10 * i, 800, (f"Page {i}.",)) for i in range(9)]
        answers = {page.key(): [page_json(f"Page {i}.")] for i, page in enumerate(pages)}
        fake.control(capacity=50, delay=0.3, page_answers=answers)
        body = ocr(gateway, document(make_pdf(pages), skip_cross_page_merge=True)).json()
        assert [p["markdown"] for p in body["pages"]] == [f"Page {i}." for i in range(9)]
        stats = httpx.get(f"{fake.url}/_stats", timeout=5).json()
        assert stats["max_in_service"] == 3  # as many as allowed, never more
    finally:
        fake.stop()


def test_dimensions_dpi_stays_in_a_sane_range_for_absurd_page_sizes(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    # A 1e9-point page renders 1024 px wide: 72 * 1024 / 1e9 dpi rounds to 0 (a client's
    # 72 / dpi divides by zero); a 0.001-point page would claim 73,727,996 dpi.
    fake.control(
        page_answers={"1024x1024": [page_json("square")], "791x1024": [page_json("letter")]}
    )
    sizes = [(1e9, 1e9), (0.001, 0.001), (612, 792)]
    pdf = make_pdf([Page(w, h) for w, h in sizes])
    response = ocr(ocrflux_gateway, document(pdf, skip_cross_page_merge=True))
    assert response.status_code == 200, response.text
    assert [p["dimensions"] for p in response.json()["pages"]] == [
        {"dpi": 1, "height": 1024, "width": 1024},  # clamped up to 1
        {"dpi": 4800, "height": 1024, "width": 1024},  # clamped down to MAX_REPORTED_DPI
        {"dpi": 93, "height": 1024, "width": 791},  # a Letter page as before: 72 * 1024 / 792
    ]
