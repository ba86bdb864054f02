"""Mistral's batch jobs through the official `mistralai` SDK, on the same engine."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from mistralai.client import Mistral

from tests.documents.pdfs import Page, make_pdf, page_json
from tests.jobs.batch_support import OCR, by_custom_id, data_url, jsonl, sql
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    started = start_gateway(gateway_env(fake_server.port, batch_poll_interval=0.1))
    yield started
    started.stop()


@pytest.fixture
def mistral(gateway: Process, fake: FakeVLLMProcess) -> Mistral:
    fake.control(answer=page_json("# Report\n\nSeen by OCRFlux."))
    return Mistral(api_key="any-key", server_url=gateway.url)


def until_ended(mistral: Mistral, job_id: str, seconds: float = 60) -> object:
    deadline = time.monotonic() + seconds
    while True:
        job = mistral.batch.jobs.get(job_id=job_id)
        if job.status in ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"):
            return job
        assert time.monotonic() < deadline, f"not ended in {seconds} s: {job}"
        time.sleep(0.1)


def test_an_ocr_job_reads_urls_and_uploaded_documents(mistral: Mistral) -> None:
    pdf = make_pdf([Page(612, 792, ("One.",)), Page(612, 792, ("Two.",))])
    stored = mistral.files.upload(file={"file_name": "scan.pdf", "content": pdf}, purpose="ocr")
    assert stored.purpose == "ocr" and stored.size_bytes == len(pdf)
    lines = [
        # Mistral's lines may leave out method and url, and the model (the job's applies).
        {"custom_id": "by-url", "body": {"document": {
            "type": "document_url", "document_url": data_url(pdf, "application/pdf")}}},
        {"custom_id": "by-file", "body": {"document": {"type": "file", "file_id": stored.id}}},
    ]  # fmt: skip
    upload = mistral.files.upload(
        file={"file_name": "requests.jsonl", "content": jsonl(lines)}, purpose="batch"
    )
    assert upload.sample_type == "batch_request" and upload.num_lines == 2
    job = mistral.batch.jobs.create(
        input_files=[upload.id], endpoint="/v1/ocr", model="mistral-ocr-latest",
        metadata={"job": "scans"},
    )  # fmt: skip
    assert job.status == "QUEUED" and job.input_files == [upload.id]
    done = until_ended(mistral, job.id)
    assert done.status == "SUCCESS", done  # type: ignore[attr-defined]
    assert (done.total_requests, done.succeeded_requests, done.failed_requests) == (2, 2, 0)  # type: ignore[attr-defined]
    assert done.completed_requests == 2 and done.error_file is None  # type: ignore[attr-defined]
    output = mistral.files.download(file_id=done.output_file).read()  # type: ignore[attr-defined]
    results = by_custom_id([orjson.loads(line) for line in output.splitlines()])
    for custom_id in ("by-url", "by-file"):
        body = results[custom_id]["response"]["body"]
        assert results[custom_id]["response"]["status_code"] == 200
        assert body["model"] == "mistral-ocr-latest" and body["num_pages"] == 2
        assert body["pages"][1]["markdown"] == "# Report\n\nSeen by OCRFlux."


def test_jobs_are_listed_filtered_and_cancelled(mistral: Mistral, fake: FakeVLLMProcess) -> None:
    fake.control(answer=page_json("x"), delay=1.0, capacity=1)
    pdf = make_pdf([Page(612, 792, ("Slow.",))] * 3)
    lines = [
        {"custom_id": f"doc-{n}", "body": {"document": {
            "type": "document_url", "document_url": data_url(pdf, "application/pdf")}}}
        for n in range(20)
    ]  # fmt: skip
    upload = mistral.files.upload(
        file={"file_name": "many.jsonl", "content": jsonl(lines)}, purpose="batch"
    )
    job = mistral.batch.jobs.create(input_files=[upload.id], endpoint=OCR)
    deadline = time.monotonic() + 20
    while mistral.batch.jobs.get(job_id=job.id).status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    running = mistral.batch.jobs.list(status=["RUNNING"])
    assert job.id in [j.id for j in running.data or []]
    assert job.id not in [j.id for j in mistral.batch.jobs.list(status=["SUCCESS"]).data or []]
    cancelled = mistral.batch.jobs.cancel(job_id=job.id)
    assert cancelled.status == "CANCELLATION_REQUESTED"
    done = until_ended(mistral, job.id)
    assert done.status == "CANCELLED"  # type: ignore[attr-defined]
    assert done.total_requests == 20 and done.completed_requests == 20  # type: ignore[attr-defined]
    assert done.failed_requests >= 1  # type: ignore[attr-defined]


def test_a_job_on_an_unknown_endpoint_or_file_is_refused(mistral: Mistral) -> None:
    from mistralai.client import errors

    with pytest.raises(errors.SDKError) as unknown:
        mistral.batch.jobs.create(input_files=["file-nope"], endpoint="/v1/ocr")
    assert unknown.value.status_code == 404
    with pytest.raises(errors.SDKError) as endpoint:
        mistral.batch.jobs.create(input_files=["file-nope"], endpoint="/v1/embeddings")
    assert endpoint.value.status_code == 400 and "endpoint" in endpoint.value.body


def test_files_are_listed_retrieved_and_deleted_through_the_mistral_sdk(mistral: Mistral) -> None:
    pdf = make_pdf([Page(612, 792, ("Kept.",))])
    document = mistral.files.upload(file={"file_name": "a.pdf", "content": pdf}, purpose="ocr")
    requests_file = mistral.files.upload(
        file={"file_name": "r.jsonl", "content": jsonl([{"custom_id": "x", "body": {}}])},
        purpose="batch",
    )
    found = mistral.files.retrieve(file_id=document.id)
    assert (found.id, found.filename, found.size_bytes) == (document.id, "a.pdf", len(pdf))
    assert found.purpose == "ocr" and found.deleted is False
    listed = mistral.files.list(page_size=1)
    assert [f.id for f in listed.data] == [requests_file.id] and listed.total is not None
    assert listed.total >= 2
    second = mistral.files.list(page=1, page_size=1)
    assert [f.id for f in second.data] == [document.id]
    by_purpose = mistral.files.list(purpose="ocr")
    assert document.id in [f.id for f in by_purpose.data]
    assert requests_file.id not in [f.id for f in by_purpose.data]
    deleted = mistral.files.delete(file_id=document.id)
    assert (deleted.id, deleted.deleted) == (document.id, True)
    assert document.id not in [f.id for f in mistral.files.list().data]


def test_jobs_list_applies_every_filter_the_sdk_sends(mistral: Mistral, gateway: Process) -> None:
    from datetime import UTC, datetime

    upload = mistral.files.upload(
        file={"file_name": "r.jsonl", "content": jsonl([{"custom_id": "x", "body": {}}])},
        purpose="batch",
    )
    made = [
        mistral.batch.jobs.create(
            input_files=[upload.id], endpoint=OCR, model=model, metadata={"team": team}
        ).id
        for model, team in (("ocr-a", "red"), ("ocr-b", "red"), ("ocr-a", "blue"))
    ]
    for job_id in made:
        until_ended(mistral, job_id)
    sql(gateway, "UPDATE batches SET created_at = 1000 WHERE id = ?", made[0])

    def ids(**filters: object) -> list[str]:
        page = mistral.batch.jobs.list(**filters)  # type: ignore[arg-type]
        return [j.id for j in page.data or [] if j.id in made]

    assert ids() == made[::-1]  # newest first
    assert ids(order_by="created") == made
    assert ids(model="ocr-a") == [made[2], made[0]]
    assert ids(metadata={"team": "red"}) == [made[1], made[0]]
    assert ids(metadata={"team": "red"}, model="ocr-a") == [made[0]]
    assert ids(created_after=datetime(2001, 1, 1, tzinfo=UTC)) == [made[2], made[1]]
    assert ids(created_by_me=True) == made[::-1]
    assert ids(agent_id="an-agent") == []
    page = mistral.batch.jobs.list(page=1, page_size=1, model="ocr-a")
    assert [j.id for j in page.data or []] == [made[0]] and page.total == 2


def test_a_job_past_its_timeout_ends_timeout_exceeded_with_its_partial_output(
    mistral: Mistral, fake: FakeVLLMProcess, gateway: Process
) -> None:
    fake.control(answer=page_json("x"), delay=0.3, capacity=1)
    pdf = make_pdf([Page(612, 792, ("Late.",))])
    lines = [
        {"custom_id": f"doc-{n}", "body": {"document": {
            "type": "document_url", "document_url": data_url(pdf, "application/pdf")}}}
        for n in range(30)
    ]  # fmt: skip
    upload = mistral.files.upload(
        file={"file_name": "late.jsonl", "content": jsonl(lines)}, purpose="batch"
    )
    job = mistral.batch.jobs.create(input_files=[upload.id], endpoint=OCR, timeout_hours=1)
    deadline = time.monotonic() + 30
    while mistral.batch.jobs.get(job_id=job.id).succeeded_requests < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sql(gateway, "UPDATE batches SET expires_at = ? WHERE id = ?", int(time.time()), job.id)
    done = until_ended(mistral, job.id)
    assert done.status == "TIMEOUT_EXCEEDED", done  # type: ignore[attr-defined]
    assert done.total_requests == 30 and done.completed_requests == 30  # type: ignore[attr-defined]
    assert 1 <= done.succeeded_requests < 30  # type: ignore[attr-defined]
    output = mistral.files.download(file_id=done.output_file).read()  # type: ignore[attr-defined]
    errors = mistral.files.download(file_id=done.error_file).read()  # type: ignore[attr-defined]
    assert len(output.splitlines()) == done.succeeded_requests  # type: ignore[attr-defined]
    skipped = [orjson.loads(line) for line in errors.splitlines()]
    assert len(skipped) == 30 - done.succeeded_requests  # type: ignore[attr-defined]
    assert {s["error"]["code"] for s in skipped if s["response"] is None} == {"batch_expired"}


def test_files_list_applies_the_filters_the_sdk_sends(mistral: Mistral) -> None:
    pdf = make_pdf([Page(612, 792, ("Found.",))])
    scan = mistral.files.upload(
        file={"file_name": "Invoice-7Q.pdf", "content": pdf, "content_type": "application/pdf"},
        purpose="ocr",
    )
    lines = [{"custom_id": "x", "body": {"document": {
        "type": "document_url", "document_url": data_url(pdf, "application/pdf")}}}]  # fmt: skip
    upload = mistral.files.upload(
        file={"file_name": "invoice-7q.jsonl", "content": jsonl(lines)}, purpose="batch"
    )
    job = mistral.batch.jobs.create(input_files=[upload.id], endpoint=OCR)
    output = until_ended(mistral, job.id).output_file  # type: ignore[attr-defined]
    assert output is not None

    def ids(**filters: object) -> list[str]:
        return [f.id for f in mistral.files.list(**filters).data]  # type: ignore[arg-type]

    assert ids(search="INVOICE-7q") == [upload.id, scan.id]  # any case, newest first
    assert ids(search="invoice-7q", mimetypes=["application/pdf"]) == [scan.id]
    assert output in ids(sample_type=["batch_result"])
    assert not {upload.id, scan.id} & set(ids(sample_type=["batch_result"]))
    assert ids(search="invoice-7q", sample_type=["batch_request", "batch_error"]) == [upload.id]
    assert output in ids(source=["mistral"]) and upload.id not in ids(source=["mistral"])
    assert ids(search="invoice-7q", source=["upload"]) == [upload.id, scan.id]
    assert ids(search="no such name") == [] and ids(source=["repository"]) == []


def test_a_bad_input_file_fails_the_job_naming_its_lines(mistral: Mistral) -> None:
    document = {"type": "document_url", "document_url": "https://example.com/a.pdf"}
    good = {"custom_id": "ok", "body": {"document": document}}
    content = jsonl([good]) + b"{not json\n" + jsonl([{"custom_id": "ok", "body": {}}])
    upload = mistral.files.upload(
        file={"file_name": "bad.jsonl", "content": content}, purpose="batch"
    )
    job = mistral.batch.jobs.create(input_files=[upload.id], endpoint=OCR)
    done = until_ended(mistral, job.id)
    assert done.status == "FAILED", done  # type: ignore[attr-defined]
    assert done.total_requests == 0 and done.output_file is None  # type: ignore[attr-defined]
    messages = [e.message for e in done.errors]  # type: ignore[attr-defined]
    assert messages == [
        "line 2: the line is not valid JSON",
        "line 3: custom_id 'ok' is used by an earlier line",
    ]


def test_a_created_after_without_a_time_zone_is_utc(fake: FakeVLLMProcess) -> None:
    from datetime import UTC, datetime, timedelta

    env = gateway_env(fake.port, batch_poll_interval=0.1)
    gateway = start_gateway({**env, "TZ": "Asia/Tokyo"})  # UTC+9: a naive time read locally is off
    try:
        mistral = Mistral(api_key="any-key", server_url=gateway.url)
        upload = mistral.files.upload(
            file={"file_name": "r.jsonl", "content": jsonl([{"custom_id": "x", "body": {}}])},
            purpose="batch",
        )
        job = mistral.batch.jobs.create(input_files=[upload.id], endpoint=OCR)
        created = datetime.fromtimestamp(job.created_at, UTC).replace(tzinfo=None)
        after = mistral.batch.jobs.list(created_after=created + timedelta(hours=1))
        before = mistral.batch.jobs.list(created_after=created - timedelta(hours=1))
        assert [j.id for j in after.data or []] == []
        assert [j.id for j in before.data or []] == [job.id]
    finally:
        gateway.stop()
