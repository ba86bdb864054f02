"""Results on disk: Markdown written whole or not at all, and the toolkit's JSONL.

Every file is written under a temporary name in its own folder and renamed into place, so an
interrupted run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import orjson

# The OCRFlux toolkit's result fields (pipeline.py), in its order.
JSONL_FIELDS = ("orig_path", "num_pages", "document_text", "page_texts", "fallback_pages")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def jsonl_record(orig_path: str, answer: dict[str, Any]) -> dict[str, Any]:
    """One JSONL line: the toolkit's fields from a `/v1/ocr` answer."""
    return {
        "orig_path": orig_path,
        "num_pages": answer.get("num_pages"),
        "document_text": answer.get("document_text", ""),
        "page_texts": answer.get("page_texts", {}),
        "fallback_pages": answer.get("fallback_pages", []),
    }


class JsonlFile:
    """A JSONL results file rewritten once per run: earlier lines kept unless their document is
    converted again, new lines added as documents finish, renamed into place by `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Earlier lines in their order; one without an `orig_path` is kept as it is.
        self._earlier: list[tuple[str | None, bytes]] = []
        if path.exists():
            self._earlier = [
                (_orig_path(line), line) for line in path.read_bytes().splitlines() if line.strip()
            ]
        self._keys = {key for key, _ in self._earlier if key is not None}
        self._file: IO[bytes] | None = None
        self._temporary: str | None = None

    def has(self, orig_path: str) -> bool:
        return orig_path in self._keys

    def open(self, replacing: set[str]) -> None:
        """Start the new file with the earlier lines, less those of documents in `replacing`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part"
        )
        self._file = os.fdopen(handle, "wb")
        for key, line in self._earlier:
            if key is None or key not in replacing:
                self._file.write(line + b"\n")

    def add(self, record: dict[str, Any]) -> None:
        assert self._file is not None, "open() first"
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()

    def close(self) -> None:
        """Put the new file in place (also after an interruption: what finished is kept)."""
        if self._file is None or self._temporary is None:
            return
        try:
            self._file.close()
            os.replace(self._temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)
            raise
        finally:
            self._file = self._temporary = None


def _orig_path(line: bytes) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = record.get("orig_path") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None
