"""File bytes (uploads, batch outputs) behind one small interface; today: a folder.

`LocalFileStorage` keeps them under `DATA_DIR/files/` (in a fleet, a volume every gateway
mounts). Everything else sees `FileStorage`, so an object store is one more class: `put` would
upload the spooled file (multipart upload for big ones), `read_range` a ranged GET, `scan`
a streamed GET, `local_path` None (downloads then stream from `read_chunks`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from typing import BinaryIO, Protocol

CHUNK = 1 << 20


class FileStorage(Protocol):
    """Where file bytes live. Blocking methods are called in threads by their users."""

    spool_dir: str  # a local folder uploads are written to before `put`

    def spool(self) -> tuple[BinaryIO, str]:
        """A new temporary file to write into (and its path), on the storage's own disk."""
        ...

    async def put(self, key: str, spooled_path: str) -> None:
        """Make a spooled file the bytes of `key` (atomically: whole or absent)."""
        ...

    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    def scan(self, key: str, max_line: int) -> Iterator[tuple[int, int, bytes | None]]:
        """(offset, length, line) for every line of `key`, newline stripped; the line is None
        when it is longer than `max_line` (never read whole). Blocking: run it in a thread."""
        ...

    def read_chunks(self, key: str) -> AsyncIterator[bytes]: ...

    def local_path(self, key: str) -> str | None: ...

    async def delete(self, key: str) -> None: ...


class LocalFileStorage:
    """Files in a folder: `root/files/<key>`, spooled in `root/tmp/` then renamed."""

    def __init__(self, root: str) -> None:
        self.files = os.path.join(root, "files")
        self.spool_dir = os.path.join(root, "tmp")
        os.makedirs(self.files, exist_ok=True)
        os.makedirs(self.spool_dir, exist_ok=True)

    def _path(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad storage key {key!r}")
        return os.path.join(self.files, key)

    def spool(self) -> tuple[BinaryIO, str]:
        fd, path = tempfile.mkstemp(dir=self.spool_dir, prefix="upload-")
        return os.fdopen(fd, "wb"), path

    async def put(self, key: str, spooled_path: str) -> None:
        await asyncio.to_thread(_commit, spooled_path, self._path(key))

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(_read_range, self._path(key), offset, length)

    def scan(self, key: str, max_line: int) -> Iterator[tuple[int, int, bytes | None]]:
        with open(self._path(key), "rb") as file:
            offset = 0
            while line := file.readline(max_line + 2):
                size = len(line)
                if not line.endswith(b"\n") and size > max_line:
                    while (more := file.readline(CHUNK)) and not more.endswith(b"\n"):
                        size += len(more)
                    size += len(more)
                    yield offset, size, None
                else:
                    content = line.rstrip(b"\r\n")
                    yield offset, len(content), content
                offset += size

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk
        finally:
            file.close()

    def local_path(self, key: str) -> str | None:
        return self._path(key)

    async def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self._path(key))

    def clean_spool(self, older_than: float) -> int:
        """Remove uploads left half-written by gateways that died (at start-up); only files
        untouched for `older_than` seconds, since in a fleet other gateways spool here too."""
        removed, limit = 0, time.time() - older_than
        for entry in os.scandir(self.spool_dir):
            with suppress(FileNotFoundError):
                if entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
        return removed


async def discard(path: str) -> None:
    """Remove a spooled file that did not become a file (gone already is fine)."""
    await asyncio.to_thread(_unlink, path)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _commit(spooled: str, final: str) -> None:
    with open(spooled, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(spooled, final)


def _read_range(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(length)
