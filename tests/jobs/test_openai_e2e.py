"""OpenAI's Batch API through the official `openai` SDK: files, batches, output, errors."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.documents.pdfs import Page, corrupt_pdf, make_pdf, page_json
from tests.jobs.batch_support import (
    CHAT,
    OCR,
    by_custom_id,
    chat_body,
    client,
    data_url,
    finish,
    jsonl,
    ocr_body,
    read_lines,
    requests,
    sql,
    submit,
    wait,
)
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

PAGE = page_json("# Invoice\n\nTotal: 42")


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    env = gateway_env(fake_server.port, batch_poll_interval=0.1, max_active_batches=4)
    started = start_gateway(env)
    yield started
    started.stop()


@pytest.fixture
def sdk(gateway: Process, fake: FakeVLLMProcess) -> openai.OpenAI:
    fake.control(answer=PAGE)
    return client(gateway)


def test_chat_lines_answer_what_the_endpoint_answers(sdk: openai.OpenAI) -> None:
    bodies = [chat_body(data_url(png(600 + 10 * n, 800), "image/png")) for n in range(12)]
    batch = submit(sdk, requests(CHAT, bodies), CHAT, metadata={"project": "invoices"})
    assert batch.status == "validating" and batch.metadata == {"project": "invoices"}
    done = finish(sdk, batch)
    assert done.status == "completed", done
    assert done.request_counts.total == 12 and done.request_counts.completed == 12
    assert done.request_counts.failed == 0 and done.error_file_id is None
    assert done.in_progress_at is not None and done.completed_at is not None
    lines = by_custom_id(read_lines(sdk, done.output_file_id))
    assert sorted(lines) == sorted(f"req-{n}" for n in range(12))
    direct = sdk.chat.completions.create(**bodies[3])
    line = lines["req-3"]
    assert line["id"].startswith("batch_req_") and line["error"] is None
    assert line["response"]["status_code"] == 200
    answer = line["response"]["body"]
    assert answer["model"] == "gpt-4o"  # the client's model name, echoed
    assert answer["choices"][0]["message"]["content"] == direct.choices[0].message.content
    assert answer["choices"][0]["message"]["content"] == "# Invoice\n\nTotal: 42"
    assert answer["usage"] == direct.usage.model_dump(exclude_none=True)
    summed = [sum(li["response"]["body"]["usage"][k] for li in lines.values())
              for k in ("prompt_tokens", "completion_tokens")]  # fmt: skip
    assert [done.usage.input_tokens, done.usage.output_tokens] == summed


def test_ocr_lines_and_their_errors_go_to_two_files(sdk: openai.OpenAI) -> None:
    good = make_pdf([Page(612, 792, ("Hello.",)), Page(612, 792, ("World.",))])
    bodies = [
        ocr_body(data_url(good, "application/pdf")),
        ocr_body(data_url(corrupt_pdf(), "application/pdf")),
        ocr_body(data_url(good, "application/pdf"), table_format="latex"),
        ocr_body(data_url(good, "application/pdf"), stream=True),
    ]
    done = finish(sdk, submit(sdk, requests(OCR, bodies), OCR))
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 3)
    output = by_custom_id(read_lines(sdk, done.output_file_id))
    errors = by_custom_id(read_lines(sdk, done.error_file_id))
    assert list(output) == ["req-0"] and sorted(errors) == ["req-1", "req-2", "req-3"]
    document = output["req-0"]["response"]["body"]
    assert document["num_pages"] == 2 and len(document["pages"]) == 2
    assert document["document_text"].startswith("# Invoice")
    # The synchronous endpoint refuses the same bodies with the same status and message.
    for custom_id, index in (("req-1", 1), ("req-2", 2)):
        direct = httpx.post(f"{sdk.base_url}ocr", json=bodies[index], timeout=30)
        response = errors[custom_id]["response"]
        assert response["status_code"] == direct.status_code == 400
        assert response["body"] == direct.json()
    assert errors["req-3"]["response"]["body"]["error"]["param"] == "body.stream"


def test_a_big_inline_document_in_a_line_is_read(sdk: openai.OpenAI) -> None:
    # Past inline_data.MIN_BYTES: the executor keeps it as bytes, as a request's body does.
    big = make_pdf([Page(612, 792, ("Hello.",)), Page(612, 792, ("World.",))])
    big += b"%" + b"x" * (1 << 20) + b"\n"
    done = finish(
        sdk, submit(sdk, requests(OCR, [ocr_body(data_url(big, "application/pdf"))]), OCR)
    )
    assert (done.status, done.request_counts.completed) == ("completed", 1)
    document = by_custom_id(read_lines(sdk, done.output_file_id))["req-0"]["response"]["body"]
    assert document["num_pages"] == 2


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json", "invalid_json_line"),
        (b'{"method": "POST", "url": "/v1/ocr", "body": {}}', "missing_custom_id"),
        (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
            "mismatched_endpoint",
        ),
        (b'{"custom_id": "a", "method": "GET", "url": "/v1/ocr", "body": {}}', "invalid_method"),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/ocr", "body": [1]}', "invalid_body"),
        (
            b'{"custom_id": "req-0", "method": "POST", "url": "/v1/ocr", "body": {}}',
            "duplicate_custom_id",
        ),
    ],
)
def test_a_bad_input_file_fails_the_batch_naming_the_line(
    sdk: openai.OpenAI, line: bytes, code: str
) -> None:
    good = requests(OCR, [ocr_body("data:application/pdf;base64,AA")] * 2)
    done = finish(sdk, submit(sdk, good + line + b"\n", OCR))
    assert done.status == "failed" and done.failed_at is not None
    assert done.output_file_id is None and done.request_counts.total == 0
    assert done.errors is not None and done.errors.data is not None
    (error,) = done.errors.data
    assert (error.code, error.line) == (code, 3)


def test_an_empty_input_file_is_refused(sdk: openai.OpenAI) -> None:
    upload = sdk.files.create(file=("input.jsonl", io.BytesIO(b"\n")), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = finish(sdk, batch)
    assert done.status == "failed" and done.errors.data[0].code == "empty_file"


def test_cancel_keeps_what_finished_and_names_the_rest(
    sdk: openai.OpenAI, fake: FakeVLLMProcess
) -> None:
    fake.control(answer=PAGE, delay=0.3, capacity=2)
    bodies = [chat_body(data_url(png(500, 700 + n), "image/png")) for n in range(40)]
    batch = submit(sdk, requests(CHAT, bodies), CHAT)
    wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.request_counts.completed >= 2)
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = finish(sdk, batch)
    assert done.status == "cancelled" and done.cancelled_at is not None
    counts = done.request_counts
    assert counts.total == 40 and counts.completed + counts.failed == 40
    assert 2 <= counts.completed < 40
    output = by_custom_id(read_lines(sdk, done.output_file_id))
    errors = by_custom_id(read_lines(sdk, done.error_file_id))
    assert len(output) == counts.completed
    assert sorted([*output, *errors]) == sorted(f"req-{n}" for n in range(40))
    skipped = next(iter(errors.values()))
    assert skipped["response"] is None and skipped["error"]["code"] == "batch_cancelled"


def test_an_expired_batch_ends_with_its_partial_output(
    sdk: openai.OpenAI, fake: FakeVLLMProcess, gateway: Process
) -> None:
    fake.control(answer=PAGE, delay=0.3, capacity=1)
    bodies = [chat_body(data_url(png(500, 900 + n), "image/png")) for n in range(30)]
    batch = submit(sdk, requests(CHAT, bodies), CHAT)
    wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.request_counts.completed >= 1)
    sql(gateway, "UPDATE batches SET expires_at = ? WHERE id = ?", int(time.time()), batch.id)
    done = finish(sdk, batch)
    assert done.status == "expired" and done.expired_at is not None
    errors = read_lines(sdk, done.error_file_id)
    assert errors and all(e["error"]["code"] == "batch_expired" for e in errors)
    assert len(errors) + done.request_counts.completed == 30


def test_batches_list_newest_first_in_pages(sdk: openai.OpenAI) -> None:
    line = requests(CHAT, [{"model": "m", "messages": []}])
    made = [submit(sdk, line, CHAT).id for _ in range(3)]
    for batch_id in made:
        finish(sdk, sdk.batches.retrieve(batch_id))
    first = sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    every = [b.id for b in sdk.batches.list(limit=2)]  # the SDK follows the pages
    assert every[:3] == made[::-1]
    files = sdk.files.list(limit=1)
    assert len(files.data) == 1 and files.has_more


def test_too_many_running_batches_is_a_429(sdk: openai.OpenAI, fake: FakeVLLMProcess) -> None:
    fake.control(answer=PAGE, delay=5)
    line = requests(CHAT, [chat_body(data_url(png(300, 400), "image/png"))])
    running = [submit(sdk, line, CHAT) for _ in range(4)]  # MAX_ACTIVE_BATCHES=4
    with pytest.raises(openai.RateLimitError) as refused:
        submit(sdk, line, CHAT)
    assert "MAX_ACTIVE_BATCHES" in str(refused.value)
    for batch in running:
        sdk.batches.cancel(batch.id)
    for batch in running:
        finish(sdk, batch)


def test_files_round_trip_and_are_deleted(sdk: openai.OpenAI) -> None:
    data = jsonl([{"custom_id": "x", "body": {}}] * 3)
    upload = sdk.files.create(file=("mine.jsonl", io.BytesIO(data)), purpose="batch")
    assert (upload.bytes, upload.filename, upload.purpose) == (len(data), "mine.jsonl", "batch")
    assert sdk.files.retrieve(upload.id).id == upload.id
    assert sdk.files.content(upload.id).content == data
    assert sdk.files.delete(upload.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(upload.id)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        sdk.files.create(file=("x.bin", io.BytesIO(b"x")), purpose="fine-tune")


def test_the_document_path_guards_urls_and_reads_uploaded_files(
    sdk: openai.OpenAI, gateway: Process
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    pdf = make_pdf([Page(612, 792, ("Stored.",))])
    stored = sdk.files.create(file=("doc.pdf", io.BytesIO(pdf)), purpose="ocr")  # type: ignore[arg-type]
    other_key = httpx.post(  # with API_KEYS unset every client shares files: a made-up id
        f"{gateway.url}/v1/files/file-000000000000000000000000", timeout=10
    )
    assert other_key.status_code in (404, 405)
    bodies: list[dict[str, Any]] = [
        ocr_body(f"http://127.0.0.1:{listener.getsockname()[1]}/secret.pdf"),
        {"model": "m", "document": {"type": "file", "file_id": stored.id}},
        {"model": "m", "document": {"type": "file", "file_id": "file-nope"}},
    ]
    done = finish(sdk, submit(sdk, requests(OCR, bodies), OCR))
    errors = by_custom_id(read_lines(sdk, done.error_file_id))
    output = by_custom_id(read_lines(sdk, done.output_file_id))
    refused = errors["req-0"]["response"]
    assert refused["status_code"] == 400 and "127.0.0.1" in refused["body"]["error"]["message"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    listener.close()
    assert output["req-1"]["response"]["body"]["num_pages"] == 1
    assert errors["req-2"]["response"]["status_code"] == 404


def test_metrics_count_batches_and_lines_and_ready_ignores_the_backlog(
    sdk: openai.OpenAI, gateway: Process, fake: FakeVLLMProcess
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    page = chat_body(data_url(png(400, 500), "image/png"))
    refused = chat_body(data_url(png(400, 500), "image/png"), stream=True)  # fails at once
    done = finish(sdk, submit(sdk, requests(CHAT, [page] * 3 + [refused]), CHAT))
    assert done.status == "completed" and done.request_counts.completed == 3
    assert done.request_counts.failed == 1
    fake.control(answer=PAGE, delay=2, capacity=1)
    waiting = submit(sdk, requests(CHAT, [page] * 50), CHAT)
    wait(lambda: sdk.batches.retrieve(waiting.id), lambda b: b.status == "in_progress")
    time.sleep(5.5)  # one census (every 5 s)
    assert httpx.get(f"{gateway.url}/ready", timeout=10).status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text)
        for s in family.samples
    }
    assert samples[("ocrflux_batches", (("status", "in_progress"),))] >= 1
    assert samples[("ocrflux_batches", (("status", "completed"),))] >= 1
    assert samples[("ocrflux_batch_lines_waiting", ())] > 0
    assert samples[("ocrflux_batch_lines_total", (("outcome", "succeeded"),))] >= 3
    assert samples[("ocrflux_batch_lines_total", (("outcome", "failed"),))] >= 1
    assert samples[("ocrflux_batch_line_duration_seconds_count", ())] >= 4
    assert ("ocrflux_background_in_flight", ()) in samples
    sdk.batches.cancel(waiting.id)
    finish(sdk, waiting)


def test_files_list_in_pages_by_purpose_and_order(sdk: openai.OpenAI) -> None:
    pdf = make_pdf([Page(612, 792, ("Listed.",))])
    made = [
        sdk.files.create(file=(f"{n}.pdf", io.BytesIO(pdf)), purpose="ocr").id  # type: ignore[arg-type]
        for n in range(3)
    ]
    newest = sdk.files.list(purpose="ocr", limit=2)
    assert [f.id for f in newest.data] == [made[2], made[1]] and newest.has_more
    assert all(f.purpose == "ocr" for f in newest.data)
    rest = sdk.files.list(purpose="ocr", limit=2, after=made[1])
    assert [f.id for f in rest.data][:1] == [made[0]]
    oldest = sdk.files.list(purpose="ocr", order="asc", after=made[0], limit=10)
    assert [f.id for f in oldest.data] == made[1:] and not oldest.has_more
    followed = [f.id for f in sdk.files.list(purpose="ocr", limit=1)]  # the SDK turns pages
    assert followed[:3] == made[::-1] and len(followed) == len(set(followed))
    assert made[0] not in [f.id for f in sdk.files.list(purpose="batch", limit=10_000)]
    with pytest.raises(openai.BadRequestError, match="order"):
        sdk.files.list(order="sideways")  # type: ignore[arg-type]


def test_every_bad_line_is_named_and_the_rest_counted(sdk: openai.OpenAI) -> None:
    good = requests(OCR, [ocr_body("data:application/pdf;base64,AA")])
    bad = [
        b"{not json",
        b'{"method": "POST", "url": "/v1/ocr", "body": {}}',
        b'{"custom_id": "req-0", "method": "POST", "url": "/v1/ocr", "body": {}}',
        b'{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
        b'{"custom_id": "d", "method": "POST", "url": "/v1/ocr", "body": "text"}',
    ]
    many = b"\n".join(bad * 3) + b"\n"  # 15 bad lines, lines 2 to 16
    done = finish(sdk, submit(sdk, good + many, OCR))
    assert done.status == "failed" and done.errors is not None
    listed = [(e.code, e.line) for e in done.errors.data or []]
    codes = ["invalid_json_line", "missing_custom_id", "duplicate_custom_id",
             "mismatched_endpoint", "invalid_body"]  # fmt: skip
    assert listed[:10] == [(codes[n % 5], n + 2) for n in range(10)]
    more = (done.errors.data or [])[10]
    assert (more.code, more.line) == ("more_errors", None)
    assert more.message.startswith("5 more lines have errors")


def test_a_chat_line_fails_with_the_endpoints_own_error(sdk: openai.OpenAI) -> None:
    bad = chat_body("data:image/png;base64,bm90IGFuIGltYWdl")  # "not an image"
    done = finish(sdk, submit(sdk, requests(CHAT, [bad]), CHAT))
    assert done.status == "completed"  # a line's error is its result, not the batch's
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 1)
    (line,) = read_lines(sdk, done.error_file_id)
    direct = httpx.post(f"{sdk.base_url}chat/completions", json=bad, timeout=30)
    assert direct.status_code == 400
    assert line["response"]["status_code"] == 400 and line["response"]["body"] == direct.json()
    assert line["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert line["error"] is None


def test_a_running_batchs_input_file_is_not_deleted_until_it_ends(
    sdk: openai.OpenAI, fake: FakeVLLMProcess
) -> None:
    fake.control(answer=PAGE, delay=2, capacity=1)
    line = requests(CHAT, [chat_body(data_url(png(300, 410), "image/png"))] * 3)
    batch = submit(sdk, line, CHAT)
    with pytest.raises(openai.ConflictError, match=f"input of batch {batch.id}"):
        sdk.files.delete(batch.input_file_id)
    assert sdk.files.retrieve(batch.input_file_id).id == batch.input_file_id
    sdk.batches.cancel(batch.id)
    assert finish(sdk, batch).status == "cancelled"
    assert sdk.files.delete(batch.input_file_id).deleted is True


def test_a_chat_lines_image_url_goes_through_the_ssrf_guard(sdk: openai.OpenAI) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    inner = chat_body(f"http://127.0.0.1:{listener.getsockname()[1]}/secret.png")
    done = finish(sdk, submit(sdk, requests(CHAT, [inner]), CHAT))
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 1)
    (line,) = read_lines(sdk, done.error_file_id)
    assert line["response"]["status_code"] == 400
    assert "127.0.0.1" in line["response"]["body"]["error"]["message"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    listener.close()
