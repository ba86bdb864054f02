"""Multipart uploads go to disk as they arrive (ocrflux.http.uploads).

A starlette Request is fed chunk by chunk, as uvicorn would; the test looks at what is in
memory (the body budget) and on disk while the body is still arriving.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from ocrflux.errors import APIError
from ocrflux.http.budget import BodyBudget
from ocrflux.http.uploads import read_multipart

BOUNDARY = "b0undary"
CHUNK = 64 * 1024
MB = 1 << 20


def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def left_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def form(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def request(
    body: bytes,
    *,
    chunk: int = CHUNK,
    on_receive: Callable[[int], None] | None = None,
    leave_after: int | None = None,
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
) -> Request:
    """A request whose body arrives `chunk` bytes at a time; `on_receive(n)` runs before the
    n-th chunk is handed over; `leave_after` chunks, the client disconnects."""
    chunks: Iterable[bytes] = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    pending = list(chunks)
    count = 0
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}

    async def receive() -> dict[str, Any]:
        nonlocal count
        if on_receive is not None:
            on_receive(count)
        if leave_after is not None and count >= leave_after:
            return {"type": "http.disconnect"}
        count += 1
        data = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": data, "more_body": bool(pending)}

    return Request(scope, receive)


async def test_the_file_goes_to_disk_and_the_fields_come_back_as_text(tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 123)
    body = form(
        part("purpose", b"ocr"),
        part("file", data, "r\xe9port.pdf", "application/pdf"),
        part("pages", b"0-2"),
    )
    budget = BodyBudget(64 * MB)
    async with read_multipart(
        request(body), tmp_path, max_file_bytes=10 * MB, budget=budget
    ) as parsed:
        assert parsed.fields == {"purpose": "ocr", "pages": "0-2"}
        file = parsed.file
        assert file is not None
        assert file.path.parent == tmp_path
        assert (file.size, file.filename, file.content_type) == (
            3 * MB + 123,
            "r\xe9port.pdf",
            "application/pdf",
        )
        assert file.path.read_bytes() == data
        assert await file.read_bytes() == data
        assert budget.held == 0  # given back once the body is in
    assert left_in(tmp_path) == []  # removed when the block ends


async def test_a_form_exactly_at_every_limit_is_accepted(tmp_path: Path) -> None:
    # The refusals below are one past each limit; this is each limit itself: a file of
    # exactly max_file_bytes, 32 fields (MAX_FORM_FIELDS), one of them exactly 64 KB.
    data = os.urandom(MB)
    fields = [part(f"f{n}", b"v") for n in range(31)] + [part("pages", b"1" * (64 * 1024))]
    body = form(part("file", data, "exact.pdf"), *fields)
    async with read_multipart(
        request(body),
        tmp_path,
        max_file_bytes=MB,
        budget=BodyBudget(64 * MB),
        max_fields=32,
        max_field_bytes=64 * 1024,
    ) as parsed:
        assert parsed.file is not None and parsed.file.size == 1_048_576
        assert await parsed.file.read_bytes() == data
        assert len(parsed.fields) == 32 and len(parsed.fields["pages"]) == 65_536


async def test_a_file_one_byte_over_the_limit_is_a_413(tmp_path: Path) -> None:
    body = form(part("file", b"x" * (MB + 1), "over.pdf"))
    with pytest.raises(APIError) as refused:
        async with read_multipart(
            request(body), tmp_path, max_file_bytes=MB, budget=BodyBudget(64 * MB)
        ):
            pass
    assert (refused.value.status, refused.value.code) == (413, "file_too_large")
    assert left_in(tmp_path) == []


async def test_only_a_slice_of_the_file_is_ever_in_memory(tmp_path: Path) -> None:
    data = os.urandom(8 * MB)
    budget = BodyBudget(64 * MB)
    held: list[int] = []
    on_disk: list[int] = []

    def look(_: int) -> None:
        held.append(budget.held)
        on_disk.append(sum(p.stat().st_size for p in tmp_path.iterdir()))

    body = form(part("file", data, "big.pdf"))
    async with read_multipart(
        request(body, on_receive=look), tmp_path, max_file_bytes=10 * MB, budget=budget
    ) as parsed:
        assert parsed.file is not None and parsed.file.size == 8 * MB
    assert max(held) <= MB + CHUNK  # never more than what waits to be written
    assert on_disk[len(on_disk) // 2] >= 3 * MB  # half-way through, most of it is on disk


async def test_a_file_over_the_limit_is_a_413_before_the_rest_arrives(tmp_path: Path) -> None:
    body = form(part("file", b"x" * (3 * MB), "big.pdf"))
    received: list[int] = []
    with pytest.raises(APIError) as refused:
        async with read_multipart(
            request(body, on_receive=received.append),
            tmp_path,
            max_file_bytes=MB,
            budget=BodyBudget(64 * MB),
        ):
            pass
    assert (refused.value.status, refused.value.code, refused.value.param) == (
        413,
        "file_too_large",
        "file",
    )
    assert refused.value.message == "the file is over the limit of 1,048,576 bytes"
    assert len(received) <= 18  # 1 MB in 64 KB chunks, and no more
    assert left_in(tmp_path) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (form(part("file", b"a", "a.pdf"), part("file", b"b", "b.pdf")), "send one file only"),
        (form(part("document", b"a", "a.pdf")), "in a field named 'file', not 'document'"),
        (form(*(part(f"f{n}", b"v") for n in range(33))), "more than 32 fields"),
        (form(part("pages", b"1" * (64 * 1024 + 1))), "field 'pages' is over the limit"),
        (form(part("pages", b"1"), part("pages", b"2")), "field 'pages' is given twice"),
        (form(part("pages", b"\xff\xfe")), "field 'pages' is not valid utf-8 text"),
        (form(part("file", b"abc", "a.pdf"), close=False), "ended before the form's closing"),
        (
            b"--" + BOUNDARY.encode() + b"\r\n" + (b"X-Y: " + b"z" * 3000 + b"\r\n") * 3 + b"\r\n",
            "headers are",
        ),
        (f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode(), "has no name"),
    ],
)
async def test_malformed_forms_are_400s_that_say_why(
    tmp_path: Path, body: bytes, says: str
) -> None:
    with pytest.raises(APIError) as refused:
        async with read_multipart(
            request(body), tmp_path, max_file_bytes=MB, budget=BodyBudget(64 * MB)
        ):
            pass
    assert (refused.value.status, refused.value.code) == (400, "invalid_multipart")
    assert says in refused.value.message
    assert left_in(tmp_path) == []


@pytest.mark.parametrize(
    ("content_type", "says"),
    [("multipart/form-data", "has no boundary"), ("text/plain", "send the form as multipart")],
)
async def test_a_body_that_is_not_a_form_is_a_400(
    tmp_path: Path, content_type: str, says: str
) -> None:
    body = form(part("pages", b"1"))
    with pytest.raises(APIError) as refused:
        async with read_multipart(
            request(body, content_type=content_type),
            tmp_path,
            max_file_bytes=MB,
            budget=BodyBudget(64 * MB),
        ):
            pass
    assert refused.value.status == 400 and says in refused.value.message


async def test_a_client_that_leaves_mid_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    body = form(part("file", os.urandom(4 * MB), "a.pdf"))
    budget = BodyBudget(64 * MB)
    with pytest.raises(APIError) as refused:
        async with read_multipart(
            request(body, leave_after=40), tmp_path, max_file_bytes=10 * MB, budget=budget
        ):
            pass
    assert refused.value.status == 499
    assert left_in(tmp_path) == []
    assert budget.held == 0


async def test_the_caller_may_keep_the_file(tmp_path: Path) -> None:
    kept = tmp_path / "kept.pdf"
    async with read_multipart(
        request(form(part("file", b"%PDF-1.4 data", "a.pdf"))),
        tmp_path,
        max_file_bytes=MB,
        budget=BodyBudget(64 * MB),
    ) as parsed:
        assert parsed.file is not None
        parsed.file.path.rename(kept)
    assert kept.read_bytes() == b"%PDF-1.4 data"
    assert left_in(tmp_path) == [kept]


async def test_a_form_without_a_file_has_none(tmp_path: Path) -> None:
    async with read_multipart(
        request(form(part("purpose", b"batch"))),
        tmp_path,
        max_file_bytes=MB,
        budget=BodyBudget(64 * MB),
    ) as parsed:
        assert (parsed.fields, parsed.file) == ({"purpose": "batch"}, None)
