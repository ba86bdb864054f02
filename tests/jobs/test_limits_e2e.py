"""The batch limits: bytes per file (MAX_FILE_BYTES), requests per batch (BATCH_MAX_LINES),
and pages of one document in flight (PAGES_IN_FLIGHT)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openai
import pytest

from tests.documents.pdfs import Page, make_pdf, page_json
from tests.jobs.batch_support import (
    CHAT,
    OCR,
    client,
    data_url,
    finish,
    ocr_body,
    read_lines,
    requests,
    submit,
)
from tests.support import FakeVLLMProcess, gateway_env, start_fake_vllm, start_gateway


def test_a_file_over_max_file_bytes_and_a_batch_over_batch_max_lines_are_refused(
    fake: FakeVLLMProcess,
) -> None:
    gateway = start_gateway(
        gateway_env(fake.port, max_file_bytes=2048, batch_max_lines=3, batch_poll_interval=0.1)
    )
    try:
        sdk = client(gateway)
        big = requests(CHAT, [{"model": "m", "messages": [], "user": "x" * 3000}])
        assert len(big) > 2048
        with pytest.raises(openai.APIStatusError) as refused:
            sdk.files.create(file=("big.jsonl", io.BytesIO(big)), purpose="batch")
        assert refused.value.status_code == 413
        assert "the limit for purpose 'batch' is 2,048" in str(refused.value)
        assert sdk.files.list().data == []  # nothing kept of it
        assert list((Path(gateway.env["DATA_DIR"]) / "tmp").iterdir()) == []
        four = requests(CHAT, [{"model": "m", "messages": []}] * 4)
        done = finish(sdk, submit(sdk, four, CHAT))
        assert done.status == "failed" and done.request_counts.total == 0
        assert done.errors is not None
        (error,) = done.errors.data or []
        assert (error.code, error.line) == ("too_many_requests", 4)
        assert error.message == "the batch has more than 3 requests (BATCH_MAX_LINES)"
        three = finish(sdk, submit(sdk, requests(CHAT, [{"model": "m", "messages": []}] * 3), CHAT))
        assert three.status == "completed" and three.request_counts.total == 3
    finally:
        gateway.stop()


def test_a_batch_document_keeps_to_pages_in_flight() -> None:
    fake = start_fake_vllm()  # its own: in-service counters are kept for the process's life
    gateway = start_gateway(
        gateway_env(fake.port, pages_in_flight=2, batch_lines_in_flight=1, batch_poll_interval=0.1)
    )
    try:
        pages = [Page(600 + 10 * i, 800, (f"Page {i}.",)) for i in range(6)]
        answers = {page.key(): [page_json(f"Page {i}.")] for i, page in enumerate(pages)}
        fake.control(capacity=50, delay=0.3, page_answers=answers)
        pdf = data_url(make_pdf(pages), "application/pdf")
        sdk = client(gateway)
        done = finish(sdk, submit(sdk, requests(OCR, [ocr_body(pdf)]), OCR))
        assert done.status == "completed" and done.request_counts.completed == 1
        (line,) = read_lines(sdk, done.output_file_id)
        assert len(line["response"]["body"]["pages"]) == 6
        stats = httpx.get(f"{fake.url}/_stats", timeout=5).json()
        assert stats["max_in_service"] == 2  # as many as allowed, never more
    finally:
        gateway.stop()
        fake.stop()
