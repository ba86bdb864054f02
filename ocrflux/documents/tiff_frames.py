"""TIFF frames in one pass: a frame table written once, then frame k opened directly.

A TIFF's frames are a chain of directories (IFDs), each pointing to the next: Pillow reaches
frame k by reading the k directories before it, so a page per frame costs O(k) and a deep
TIFF's pages O(frames^2) (pages 4000-4999 of a 5,000-frame TIFF: 87.5 s). Opening the
document walks the chain once (it checks every frame's size anyway) and writes each frame's
directory offset beside the file; a page then opens its frame as if it were the first (the
header's first-directory pointer read as the frame's), reading one directory, whatever k.
A page task stays a path and an index.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from PIL import Image, TiffImagePlugin

from ocrflux.intake.images import check_size, open_image

_SUFFIX = ".frames"
_OFFSET = struct.Struct("<Q")  # one directory offset per frame, in the table


def table_path(path: str) -> str:
    """Where the frame table of the TIFF at `path` is kept."""
    return path + _SUFFIX


def write_table(path: str, image: Image.Image, max_pixels: int) -> int:
    """Walk every frame once (each size checked), write the frame table, return the count."""
    offsets: list[int] = []
    frames = getattr(image, "n_frames", 1)
    for frame in range(frames):
        if frame:
            image.seek(frame)
            check_size(image, max_pixels)
        if isinstance(image, TiffImagePlugin.TiffImageFile) and image.tag_v2.offset:
            offsets.append(image.tag_v2.offset)
    if len(offsets) == frames:
        with open(table_path(path), "wb") as file:
            file.write(struct.pack(f"<{frames}Q", *offsets))
    return frames


def remove_table(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(table_path(path))


def _offset(path: str, index: int) -> int | None:
    """Frame `index`'s directory offset from the table; None when there is no table."""
    try:
        with open(table_path(path), "rb") as file:
            file.seek(index * _OFFSET.size)
            raw = file.read(_OFFSET.size)
    except FileNotFoundError:
        return None
    return _OFFSET.unpack(raw)[0] if len(raw) == _OFFSET.size else None


class _Rebased(io.RawIOBase):
    """A file read with its first bytes replaced by `head` (a header naming another IFD).

    Every other byte is the file's own, at its own offset, so strips and tags are found where
    they are; `fileno` is the file's, for libtiff, which finds the frame by its directory
    offset (`tag_v2.offset`) rather than through the header.
    """

    def __init__(self, file: io.FileIO, head: bytes) -> None:
        super().__init__()
        self._file = file
        self._head = head

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        start = self._file.tell()
        count = self._file.readinto(buffer) or 0
        if start < len(self._head) and count:
            end = min(len(self._head), start + count)
            memoryview(buffer).cast("B")[: end - start] = self._head[start:end]
        return count


def _head(file: io.FileIO, offset: int) -> bytes:
    """The TIFF header with its first-directory pointer set to `offset` (classic or BigTIFF)."""
    start = file.read(16)
    order = "<" if start[:2] == b"II" else ">"
    if start[2:4] in (b"+\x00", b"\x00+"):  # BigTIFF: the pointer is 8 bytes at 8
        return start[:8] + struct.pack(order + "Q", offset)
    return start[:4] + struct.pack(order + "I", offset)


@contextmanager
def open_frame(path: str, index: int, max_pixels: int) -> Iterator[Image.Image]:
    """Frame `index` of the TIFF at `path`, opened lazily (header only) as a first frame.

    Without a frame table (the document was not opened by `inspect_document`), Pillow walks
    the chain as before.
    """
    offset = _offset(path, index)
    with open(path, "rb", buffering=0) as file:
        if offset is None:
            image = open_image(file.read(), "image/tiff", max_pixels)
            if index:
                image.seek(index)
                check_size(image, max_pixels)
            yield image
            return
        head = _head(file, offset)
        file.seek(0)
        yield open_image(io.BufferedReader(_Rebased(file, head)), "image/tiff", max_pixels)
