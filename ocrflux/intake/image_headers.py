"""Bounded header work: strip the metadata no page reader needs, read EXIF orientation cheaply.

Pillow parses everything in front of the pixel data when it opens an image, in Python and
without a budget: a 69 KB PNG of compressed text chunks inflates to 64 MB (~300 ms), 200,000
empty chunks take over a second, a JPEG of tiny comment or Photoshop segments several seconds.
vLLM opens what we forward with Pillow too. So before any Pillow call the gateway walks the
chunk/segment list itself, under a count limit, and removes what only costs: text chunks and
ICC profiles in PNGs, comments and non-essential APPn segments in JPEGs. Pixels, palette,
transparency and EXIF orientation are kept: the model sees the same pixels.
"""

from __future__ import annotations

import re
import struct


class HeaderRefused(ValueError):
    """An image whose structure no real encoder produces; the message says what is wrong."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A real PNG has a handful of chunks plus its IDAT run (Pillow writes 64 KB IDATs, libpng 8 KB):
# 20 MB of 1 KB IDATs is 20,480. Past this many, the image is refused.
MAX_PNG_CHUNKS = 32_768
# Walking this many chunks costs ~0.5 ms: the event loop's budget for one image.
QUICK_PNG_CHUNKS = 1024
# Text, and the ICC profile: Pillow inflates each iCCP chunk (up to 1 MB), and neither Pillow's
# nor vLLM's convert("RGB") applies a profile, so the model sees the same pixels without it.
_PNG_DROP = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
_PNG_ONCE = frozenset({b"eXIf"})

# A JPEG header (before the first scan) holds ~10-30 segments; ICC profiles take up to 255.
MAX_JPEG_SEGMENTS = 1024
# Pillow parses quantization tables in Python; 4 tables of 16-bit precision take 516 bytes.
MAX_JPEG_DQT_BYTES = 4096
_SOS, _EOI, _DQT, _COM = 0xDA, 0xD9, 0xDB, 0xFE
_APP0, _APP1, _APP2, _APP14 = 0xE0, 0xE1, 0xE2, 0xEE
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RSTn: no length
_FILL = re.compile(rb"\xff+")

_ORIENTATION_TAG = 0x0112
# EXIF types whose single value fits the entry: BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG.
_INLINE_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i"}
# IFD0 of a camera holds ~10-60 entries; a block claiming more is read this far only.
MAX_EXIF_ENTRIES = 512


def strip_metadata(data: bytes, mime: str, *, quick: bool = False) -> bytes | None:
    """`data` without costly metadata (the same object when nothing is removed).

    With `quick`, the work is bounded for the event loop: None means "do it in a thread". An
    image whose structure no encoder produces (too many chunks or segments) raises
    HeaderRefused.
    """
    if mime == "image/png":
        return _strip_png(data, QUICK_PNG_CHUNKS if quick else MAX_PNG_CHUNKS)
    if mime == "image/jpeg":
        return _strip_jpeg(data)
    return data


def _strip_png(data: bytes, limit: int) -> bytes | None:
    view = memoryview(data)
    kept: list[memoryview] = []
    seen: set[bytes] = set()
    run, pos = 0, len(PNG_SIGNATURE)  # `run`: start of the bytes kept since the last drop
    for count in range(limit + 1):
        if pos + 8 > len(data):
            break  # truncated: Pillow decides what it can read
        if count == limit:
            if limit < MAX_PNG_CHUNKS:
                return None
            raise HeaderRefused(f"PNG has more than {MAX_PNG_CHUNKS:,} chunks")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if kind in _PNG_DROP or (kind in _PNG_ONCE and kind in seen):
            kept.append(view[run:pos])
            run = min(end, len(data))
        seen.add(kind)
        if kind == b"IEND":
            break
        pos = end
    if not kept:
        return data
    kept.append(view[run:])
    return b"".join(kept)


def _keep_jpeg_segment(marker: int, body: memoryview, seen: set[str]) -> bool:
    """Whether a decoder needs this segment: tables, frame, JFIF, EXIF, ICC profile, Adobe."""
    if marker == _APP0:
        name = "jfif"
    elif marker == _APP1:
        if bytes(body[:6]) != b"Exif\x00\x00":
            return False  # XMP and friends
        name = "exif"
    elif marker == _APP2:
        return bytes(body[:12]) == b"ICC_PROFILE\x00"  # not MPF (more pictures) or FlashPix
    else:  # comments and other APPn (Photoshop, Ducky, ...) go; tables and frames stay
        return not (marker == _COM or (0xE0 <= marker <= 0xEF and marker != _APP14))
    if name in seen:  # Pillow reads the first one only
        return False
    seen.add(name)
    return True


def _strip_jpeg(data: bytes) -> bytes:
    view = memoryview(data)
    kept: list[memoryview] = [view[:2]]
    seen: set[str] = set()
    dqt_bytes = dropped = 0
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if data[pos : pos + 1] != b"\xff":
            raise HeaderRefused("image data could not be read as image/jpeg")
        fill = _FILL.match(data, pos)
        assert fill is not None
        dropped += fill.end() - pos - 1  # fill bytes before a marker are legal, and useless
        pos = fill.end()
        if pos >= len(data):
            raise HeaderRefused("image data could not be read as image/jpeg")
        marker = data[pos]
        if marker in (_SOS, _EOI):
            kept.append(view[pos - 1 :])
            break
        if marker in _STANDALONE:
            pos += 1
            continue
        if pos + 3 > len(data):
            raise HeaderRefused("image data could not be read as image/jpeg")
        length = struct.unpack_from(">H", data, pos + 1)[0]
        end = pos + 1 + length
        if length < 2 or end > len(data) or marker == 0:
            raise HeaderRefused("image data could not be read as image/jpeg")
        if marker == _DQT:
            dqt_bytes += length
            if dqt_bytes > MAX_JPEG_DQT_BYTES:
                raise HeaderRefused("JPEG header is malformed (quantization tables too large)")
        if _keep_jpeg_segment(marker, view[pos + 3 : end], seen):
            kept.append(view[pos - 1 : end])
        else:
            dropped += end - pos + 1
        pos = end
    else:
        raise HeaderRefused(f"JPEG has more than {MAX_JPEG_SEGMENTS:,} segments before its image")
    if not dropped:
        return data
    return b"".join(kept)


def exif_orientation(raw: bytes) -> int:
    """EXIF orientation (1-8) from an EXIF block; 1 when absent or unreadable.

    Reads IFD0's orientation entry and nothing else (Pillow's Exif parses every entry and
    value: ~80 ms for a crafted block).
    """
    if raw[:6] == b"Exif\x00\x00":
        raw = raw[6:]
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(raw[:4])
    if order is None or len(raw) < 10:
        return 1
    offset = struct.unpack_from(order + "I", raw, 4)[0]
    if offset + 2 > len(raw):
        return 1
    count = min(struct.unpack_from(order + "H", raw, offset)[0], MAX_EXIF_ENTRIES)
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(raw) - 11), 12):
        tag, kind, values = struct.unpack_from(order + "HHI", raw, entry)
        if tag != _ORIENTATION_TAG:
            continue
        code = _INLINE_TYPES.get(kind)
        if code is None or values != 1:
            return 1
        value = struct.unpack_from(order + code, raw, entry + 8)[0]
        return value if 1 <= value <= 8 else 1
    return 1
