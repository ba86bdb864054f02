"""Multipart uploads streamed to disk as they arrive, never whole in memory.

`read_multipart` parses a multipart/form-data request with python-multipart's streaming
parser as its chunks arrive. The file part goes to a temporary file in the caller's
directory, written every `FLUSH_BYTES` (in a thread) and capped as it arrives (413); the
other parts are small text fields, bounded in count and size. Only what waits to be
written is in memory, and it counts against the body budget (ocrflux.http.budget): sixteen
clients stalling 60 MB uploads hold ~16 MB, not 1 GB.

    async with read_multipart(request, directory, max_file_bytes=..., budget=...) as form:
        form.fields["purpose"], form.file.path, form.file.size, form.file.filename

The file is removed when the block ends unless the caller moved it away.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ocrflux.errors import APIError
from ocrflux.http.budget import BodyBudget

logger = logging.getLogger("ocrflux")

# File data kept in memory before it is written out (the spool threshold).
FLUSH_BYTES = 1 << 20
# A part's headers (Content-Disposition, Content-Type, ...) are a few hundred bytes.
MAX_PART_HEADER_BYTES = 8 * 1024
# Boundaries, part headers, preamble: allowed on top of the file and the fields.
ENVELOPE_BYTES = 1 << 20


@dataclass(frozen=True)
class UploadedFile:
    """The file part, on disk: where, how many bytes, and what the client called it.

    `filename` is the client's word, never a path to open.
    """

    path: Path
    size: int
    filename: str | None
    content_type: str | None

    async def read_bytes(self) -> bytes:
        """The whole file (read in a thread)."""
        return await asyncio.to_thread(self.path.read_bytes)


@dataclass(frozen=True)
class MultipartForm:
    """A parsed form: its text fields and its file part (None when it had none)."""

    fields: dict[str, str]
    file: UploadedFile | None


@contextlib.asynccontextmanager
async def read_multipart(
    request: Request,
    directory: str | os.PathLike[str],
    *,
    max_file_bytes: int,
    budget: BodyBudget,
    file_field: str = "file",
    max_fields: int = 32,
    max_field_bytes: int = 64 * 1024,
) -> AsyncIterator[MultipartForm]:
    """The request's form, its file part written to a temporary file in `directory`.

    Refusals are `APIError`s: 413 for a file over `max_file_bytes` (or a body over what the
    file and fields allow), 400 for a malformed body, a file in another field than
    `file_field`, a second file, more than `max_fields` fields or one over `max_field_bytes`,
    503 when the body budget has no room, 499 when the client leaves mid-body.
    """
    reader = _FormReader(Path(directory), file_field, max_file_bytes, max_fields, max_field_bytes)
    try:
        async with budget.hold() as hold:
            form = await reader.read(request, hold.cover)
        yield form
    finally:
        await reader.discard()


class _Part:
    """The part being parsed: its headers so far, then what it is."""

    def __init__(self) -> None:
        self.header_name = b""
        self.header_value = b""
        self.header_bytes = 0
        self.disposition = b""
        self.content_type: bytes | None = None
        self.name = ""
        self.is_file = False
        self.filename: str | None = None
        self.data = bytearray()  # a field's value


class _FormReader:
    """python-multipart's callbacks (synchronous) plus the async loop that feeds them."""

    def __init__(
        self,
        directory: Path,
        file_field: str,
        max_file_bytes: int,
        max_fields: int,
        max_field_bytes: int,
    ) -> None:
        self.directory = directory
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.max_body = max_file_bytes + max_fields * max_field_bytes + ENVELOPE_BYTES
        self.charset = "utf-8"
        self.part = _Part()
        self.fields: dict[str, str] = {}
        self.field_bytes = 0
        self.file_part: _Part | None = None
        self.file_size = 0
        self.pending = bytearray()  # file data not written yet
        self.path: Path | None = None
        self.out: IO[bytes] | None = None
        self.ended = False

    # --- the feeding loop ---------------------------------------------------------------------

    async def read(
        self, request: Request, cover: Callable[[int], Awaitable[None]]
    ) -> MultipartForm:
        parser = self._parser(request.headers.get("content-type", ""))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large_body()
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > self.max_body:
                    raise self._too_large_body()
                try:
                    parser.write(chunk)
                except FormParserError:
                    raise _invalid("the body is not valid multipart/form-data") from None
                await cover(len(self.pending) + self.field_bytes)
                if len(self.pending) >= FLUSH_BYTES:
                    await self._flush()
        except ClientDisconnect:
            raise APIError(499, "the client left before its request body was complete") from None
        try:
            parser.finalize()
        except FormParserError:
            raise _invalid("the body is not valid multipart/form-data") from None
        if not self.ended:
            raise _invalid("the body ended before the form's closing boundary")
        part = self.file_part
        if part is None:
            return MultipartForm(self.fields, None)
        await self._flush()
        await asyncio.to_thread(self._close_file)
        assert self.path is not None
        content_type = part.content_type.decode("latin-1") if part.content_type else None
        file = UploadedFile(self.path, self.file_size, part.filename, content_type)
        return MultipartForm(self.fields, file)

    def _parser(self, content_type: str) -> MultipartParser:
        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data":
            raise _invalid("send the form as multipart/form-data")
        boundary = params.get(b"boundary")
        if not boundary:
            raise _invalid("the Content-Type has no boundary")
        charset = params.get(b"charset", b"utf-8").decode("latin-1")
        with contextlib.suppress(LookupError):
            self.charset = codecs.lookup(charset).name
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    async def _flush(self) -> None:
        out = self.out
        if out is None:
            out = await asyncio.to_thread(self._create_file)
        if self.pending:
            data, self.pending = self.pending, bytearray()
            try:
                await asyncio.to_thread(out.write, data)
            except OSError as exc:
                logger.error("writing an upload to %s failed: %s", self.directory, exc)
                raise APIError(
                    503, "the gateway could not store the upload", code="upload_storage_error"
                ) from None

    def _create_file(self) -> IO[bytes]:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.directory)
        self.path = Path(name)
        self.out = os.fdopen(fd, "wb")
        return self.out

    def _close_file(self) -> None:
        if self.out is not None:
            self.out.close()

    async def discard(self) -> None:
        """Close and remove the file, unless the caller moved it away."""
        out, path = self.out, self.path
        self.out = self.path = None

        def remove() -> None:
            if out is not None:
                out.close()
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        if out is not None or path is not None:
            await asyncio.to_thread(remove)

    # --- python-multipart's callbacks ---------------------------------------------------------

    def _part_begin(self) -> None:
        self.part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.part.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.part.header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self.part.header_bytes += size
        if self.part.header_bytes > MAX_PART_HEADER_BYTES:
            raise _invalid(f"a part's headers are over {MAX_PART_HEADER_BYTES:,} bytes")

    def _header_end(self) -> None:
        part = self.part
        name = part.header_name.lower()
        if name == b"content-disposition":
            part.disposition = part.header_value
        elif name == b"content-type":
            part.content_type = part.header_value.strip()
        part.header_name = part.header_value = b""

    def _headers_finished(self) -> None:
        part = self.part
        _, options = parse_options_header(part.disposition)
        if b"name" not in options:
            raise _invalid("a part has no name in its Content-Disposition")
        part.name = self._text(options[b"name"], "a part's name")
        filename = options.get(b"filename")
        if part.name == self.file_field:
            if self.file_part is not None:
                raise _invalid(f"send one file only (a second {part.name!r} part came)", part.name)
            part.is_file = True
            if filename is not None:
                part.filename = self._text(filename, "the file's name")
            self.file_part = part
        elif filename is not None:
            raise _invalid(
                f"upload the file in a field named {self.file_field!r}, not {part.name!r}",
                part.name,
            )
        elif part.name in self.fields:
            raise _invalid(f"field {part.name!r} is given twice", part.name)
        elif len(self.fields) >= self.max_fields:
            raise _invalid(f"the form has more than {self.max_fields} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        size = end - start
        if part.is_file:
            self.file_size += size
            if self.file_size > self.max_file_bytes:
                raise APIError(
                    413,
                    f"the file is over the limit of {self.max_file_bytes:,} bytes",
                    param=self.file_field,
                    code="file_too_large",
                )
            self.pending += memoryview(data)[start:end]
            return
        if len(part.data) + size > self.max_field_bytes:
            raise _invalid(
                f"field {part.name!r} is over the limit of {self.max_field_bytes:,} bytes",
                part.name,
            )
        part.data += memoryview(data)[start:end]
        self.field_bytes += size

    def _part_end(self) -> None:
        part = self.part
        if not part.is_file:
            self.fields[part.name] = self._text(bytes(part.data), f"field {part.name!r}")

    def _end(self) -> None:
        self.ended = True

    # --- helpers ------------------------------------------------------------------------------

    def _text(self, raw: bytes, what: str) -> str:
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            raise _invalid(f"{what} is not valid {self.charset} text") from None

    def _too_large_body(self) -> APIError:
        return APIError(
            413,
            f"request body is over the limit of {self.max_body:,} bytes "
            f"(a file of {self.max_file_bytes:,} bytes and its form)",
            code="request_too_large",
        )


def _invalid(message: str, param: str | None = None) -> APIError:
    return APIError(400, f"multipart body: {message}", param=param, code="invalid_multipart")
