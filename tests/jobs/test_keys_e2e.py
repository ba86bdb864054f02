"""With API_KEYS, each key sees only its own files and batches; old ones are deleted."""

from __future__ import annotations

import io
import time
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
from tests.support import FakeVLLMProcess, gateway_env, start_gateway


def test_another_keys_files_and_batches_are_not_found(fake: FakeVLLMProcess) -> None:
    gateway = start_gateway(
        gateway_env(fake.port, api_keys="key-one,key-two", batch_poll_interval=0.1)
    )
    try:
        one, two = client(gateway, "key-one"), client(gateway, "key-two")
        pdf = make_pdf([Page(612, 792, ("Private.",))])
        document = one.files.create(file=("a.pdf", io.BytesIO(pdf)), purpose="ocr")  # type: ignore[arg-type]
        batch = submit(one, requests(CHAT, [{"model": "m", "messages": []}]), CHAT)
        for call in (
            lambda: two.files.retrieve(document.id),
            lambda: two.files.content(document.id),
            lambda: two.files.delete(document.id),
            lambda: two.batches.retrieve(batch.id),
            lambda: two.batches.cancel(batch.id),
            lambda: two.batches.create(
                input_file_id=batch.input_file_id, endpoint=CHAT, completion_window="24h"
            ),
        ):
            with pytest.raises(openai.NotFoundError):  # a 404, never a 403 that confirms it
                call()
        assert two.files.list().data == [] and two.batches.list().data == []
        # Both made in the same second: their order is the ids' (random), so compare the sets;
        # the batch may already have ended and added its error file.
        mine = {f.id: f.purpose for f in one.files.list().data}
        uploaded = {batch.input_file_id, document.id}
        assert uploaded <= set(mine)
        assert all(mine[f] in ("batch_output", "batch_error") for f in set(mine) - uploaded), mine
        by_two = httpx.post(
            f"{gateway.url}/v1/ocr",
            json={"document": {"type": "file", "file_id": document.id}},
            headers={"Authorization": "Bearer key-two"},
            timeout=30,
        )
        assert by_two.status_code == 404
        with pytest.raises(openai.AuthenticationError):
            client(gateway, "key-three").files.list()
    finally:
        gateway.stop()


def test_files_and_ended_batches_are_deleted_after_the_retention(fake: FakeVLLMProcess) -> None:
    fake.control(answer=page_json("Kept a while."))
    gateway = start_gateway(
        gateway_env(fake.port, jobs_retention_hours=0.001, batch_poll_interval=0.1)
    )  # 3.6 s
    try:
        sdk = client(gateway)
        pdf = make_pdf([Page(612, 792, ("Soon gone.",))])
        done = finish(
            sdk, submit(sdk, requests(OCR, [ocr_body(data_url(pdf, "application/pdf"))]), OCR)
        )
        assert done.status == "completed" and done.output_file_id
        assert sdk.files.content(done.output_file_id).content
        deadline = time.monotonic() + 30
        while True:
            try:
                sdk.batches.retrieve(done.id)
            except openai.NotFoundError:
                break
            assert time.monotonic() < deadline, "the batch outlived its retention"
            time.sleep(0.3)
        for file_id in (done.output_file_id, done.input_file_id):
            with pytest.raises(openai.NotFoundError):
                sdk.files.retrieve(file_id)
        assert list((Path(gateway.env["DATA_DIR"]) / "files").iterdir()) == []
    finally:
        gateway.stop()


def test_every_batch_door_hides_another_keys_work(fake: FakeVLLMProcess) -> None:
    from mistralai.client import Mistral, errors

    fake.control(answer=page_json("Mine."))
    gateway = start_gateway(
        gateway_env(
            fake.port, api_keys="key-one,key-two", max_active_batches=1, batch_poll_interval=0.1
        )
    )
    try:
        one, two = client(gateway, "key-one"), client(gateway, "key-two")
        pdf = make_pdf([Page(612, 792, ("Private.",))])
        document = one.files.create(file=("a.pdf", io.BytesIO(pdf)), purpose="ocr")  # type: ignore[arg-type]
        by_file = {"model": "m", "document": {"type": "file", "file_id": document.id}}
        mine = finish(one, submit(one, requests(OCR, [by_file]), OCR))
        assert mine.request_counts.completed == 1 and mine.output_file_id
        # A line of key-two naming key-one's document: that line is a 404.
        theirs = finish(two, submit(two, requests(OCR, [by_file]), OCR))
        assert (theirs.request_counts.completed, theirs.request_counts.failed) == (0, 1)
        (line,) = read_lines(two, theirs.error_file_id)
        assert line["response"]["status_code"] == 404
        with pytest.raises(openai.NotFoundError):
            two.files.content(mine.output_file_id)
        mistral = Mistral(api_key="key-two", server_url=gateway.url)
        for call in (
            lambda: mistral.batch.jobs.get(job_id=mine.id),
            lambda: mistral.batch.jobs.cancel(job_id=mine.id),
            lambda: mistral.files.retrieve(file_id=document.id),
            lambda: mistral.files.download(file_id=mine.output_file_id),
            lambda: mistral.files.delete(file_id=mine.input_file_id),
        ):
            with pytest.raises(errors.SDKError) as hidden:
                call()
            assert hidden.value.status_code == 404
        assert mine.id not in [j.id for j in mistral.batch.jobs.list().data or []]
        assert mistral.batch.jobs.list().total == 1  # its own batch only
        assert document.id not in [f.id for f in mistral.files.list().data]
        # MAX_ACTIVE_BATCHES counts per key: key-one's running batch does not stop key-two.
        fake.control(answer=page_json("Slow."), delay=5)
        hello = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
        slow = submit(one, requests(CHAT, [hello]), CHAT)
        with pytest.raises(openai.RateLimitError):
            submit(one, requests(CHAT, [hello]), CHAT)
        other = submit(two, requests(CHAT, [hello]), CHAT)
        for sdk, batch in ((one, slow), (two, other)):
            sdk.batches.cancel(batch.id)
            finish(sdk, batch)
    finally:
        gateway.stop()
