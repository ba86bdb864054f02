"""Checking a batch's input files line by line, as OpenAI's Batch API does, in bounded memory.

Each line must be a JSON object with a string `custom_id`, a `body` object, and (OpenAI's
shape) `"method": "POST"` and the batch's endpoint as `url`; Mistral's lines may leave out
`method` and `url`. Blank lines are skipped. The files are read in a thread, a chunk of lines
at a time: what is kept per line is where it is and its custom_id (repeats are found by the
database's unique index, not by a set in memory).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from ocrflux.jobs.records import LineSpec, ValidationErrors
from ocrflux.jobs.storage import FileStorage

CHUNK_LINES = 500
MAX_CUSTOM_ID = 512


class InputScanner:
    """Reads the input files of one batch; `chunks()` runs in a thread."""

    def __init__(
        self,
        storage: FileStorage,
        keys: list[str],
        *,
        endpoint: str,
        strict: bool,
        max_lines: int,
        max_line_bytes: int,
        errors: ValidationErrors,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.endpoint = endpoint
        self.strict = strict  # OpenAI: method and url are required
        self.max_lines = max_lines
        self.max_line_bytes = max_line_bytes
        self.errors = errors
        self.count = 0  # requests found so far
        # (line_no -> (file index, 1-based line in that file)) of the chunk last produced
        self.where: dict[int, tuple[int, int]] = {}

    def chunks(self) -> Iterator[list[LineSpec]]:
        """Chunks of `LineSpec` (blocking: advance it in a thread); errors go to `errors`."""
        chunk: list[LineSpec] = []
        for file_index, key in enumerate(self.keys):
            for file_line, (offset, length, raw) in enumerate(
                self.storage.scan(key, self.max_line_bytes), start=1
            ):
                spec = self._check(file_index, file_line, offset, length, raw)
                if spec is None:
                    continue
                if self.count > self.max_lines:
                    self.add(
                        "too_many_requests",
                        f"the batch has more than {self.max_lines:,} requests (BATCH_MAX_LINES)",
                        (file_index, file_line),
                    )
                    if chunk:
                        yield chunk
                    return
                self.where[spec.line_no] = (file_index, file_line)
                chunk.append(spec)
                if len(chunk) >= CHUNK_LINES:
                    yield chunk
                    chunk = []
                    self.where = {}
        if chunk:
            yield chunk

    def _check(
        self, file_index: int, file_line: int, offset: int, length: int, raw: bytes | None
    ) -> LineSpec | None:
        def add(code: str, message: str, line: int, param: str | None = None) -> None:
            self.add(code, message, (file_index, line), param)

        if raw is None:
            add(
                "line_too_large",
                f"the line is {length:,} bytes, the limit is {self.max_line_bytes:,}",
                line=file_line,
            )
            self.count += 1
            return None
        if not raw.strip():
            return None
        self.count += 1
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            add("invalid_json_line", "the line is not valid JSON", line=file_line)
            return None
        if not isinstance(data, dict):
            add("invalid_json_line", "the line is not a JSON object", line=file_line)
            return None
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            add("missing_custom_id", "custom_id must be a non-empty string", line=file_line,
                param="custom_id")  # fmt: skip
            return None
        if len(custom_id) > MAX_CUSTOM_ID:
            add("invalid_custom_id", f"custom_id is longer than {MAX_CUSTOM_ID} characters",
                line=file_line, param="custom_id")  # fmt: skip
            return None
        method = data.get("method")
        if (self.strict or method is not None) and method != "POST":
            add("invalid_method", f"method must be 'POST', not {method!r}", line=file_line,
                param="method")  # fmt: skip
            return None
        url = data.get("url")
        if (self.strict or url is not None) and url != self.endpoint:
            add(
                "mismatched_endpoint",
                f"url {url!r} is not the batch's endpoint {self.endpoint!r}",
                line=file_line,
                param="url",
            )
            return None
        if not isinstance(data.get("body"), dict):
            add("invalid_body", "body must be a JSON object", line=file_line, param="body")
            return None
        return LineSpec(self.count - 1, custom_id, file_index, offset, length)

    def add(
        self, code: str, message: str, where: tuple[int, int], param: str | None = None
    ) -> None:
        """An error at (file index, line in that file); with several input files the
        message says which one (`line` counts within its file)."""
        file_index, line = where
        if len(self.keys) > 1:
            message += f" (input file {file_index + 1})"
        self.errors.add(code, message, line=line, param=param, file=file_index)
