"""Image input: the client's string decoded, the format recognised, and the refusal type.

A `data:` URL or bare base64 becomes bytes (size-capped before decoding); the bytes' magic
number says which raster format they hold, or names what they are instead. Pure and cheap:
fine on the event loop.
"""

from __future__ import annotations

import binascii
import re

import pybase64

_MB = 1024 * 1024
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class ImageRejected(Exception):
    """An image the gateway refuses; `status` is 400, or 413 when it is too large."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def format_mb(n: int) -> str:
    """20971520 -> "20 MB", 26528972 -> "25.3 MB", 65536 -> "64 KB" (binary units)."""
    if n < _MB:
        return f"{n / 1024:.0f} KB"
    value = n / _MB
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def too_big(n: int, limit: int) -> ImageRejected:
    return ImageRejected(f"image is {format_mb(n)}, the limit is {format_mb(limit)}", 413)


# --- decoding the client's string -------------------------------------------------------------


def split_inline(url: str) -> tuple[str | None, str]:
    """`data:` URL or bare base64 -> (declared MIME or None, base64 text)."""
    if url[:5].lower() == "data:":
        header, comma, payload = url[5:].partition(",")
        if not comma:
            raise ImageRejected("data URL has no ',' before its data")
        params = header.split(";")
        if "base64" not in (p.strip().lower() for p in params[1:]):
            raise ImageRejected("data URL must be base64-encoded (';base64,')")
        return (params[0].strip().lower() or None), payload
    scheme = _SCHEME.match(url[:64])
    if scheme:
        raise ImageRejected(
            f"unsupported URL scheme {scheme.group(1).lower()!r}: "
            "send a data: URL, bare base64 or an http(s) URL"
        )
    return None, url


def check_encoded_size(b64: str, max_bytes: int) -> None:
    # Estimated before decoding so a huge body is refused without allocating its bytes.
    estimate = len(b64) * 3 // 4 - b64[-2:].count("=")
    if estimate > max_bytes:
        raise too_big(estimate, max_bytes)


def b64decode(b64: str) -> tuple[bytes, bool]:
    """(bytes, strict): strict base64 first; forgive line breaks, URL-safe alphabet, no padding."""
    try:
        # pybase64 (SIMD) validates and decodes 1 MB in ~0.1 ms; binascii takes ~6 ms here.
        return pybase64.b64decode(b64, validate=True), True
    except (binascii.Error, ValueError):
        pass
    text = "".join(b64.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return pybase64.b64decode(text, validate=True), False
    except (binascii.Error, ValueError):
        raise ImageRejected("not valid base64") from None


def decode_base64_view(b64: memoryview, max_bytes: int) -> bytes:
    """The bytes of base64 text held as bytes (a big inline document, `ocrflux.inline_data`).

    pybase64 lets go of the GIL while it decodes a buffer: in a thread, this costs the event
    loop next to nothing (a 45 MB payload held it ~15 ms, against ~200 ms for a string on it).
    """
    size = len(b64) * 3 // 4 - bytes(b64[-2:]).count(b"=")
    if size > max_bytes:
        raise too_big(size, max_bytes)
    try:
        return pybase64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        # Not strict base64 (line breaks, URL-safe alphabet, no padding): the forgiving way.
        return b64decode(str(b64, "ascii", "replace"))[0]


def decode_base64(url: str, max_bytes: int) -> bytes:
    """Bytes of a `data:` URL or bare base64 string (size-capped before decoding)."""
    _, b64 = split_inline(url)
    check_encoded_size(b64, max_bytes)
    return b64decode(b64)[0]


# --- recognising the format -------------------------------------------------------------------

# Office files are ZIPs: named from the parts they hold (Office Open XML), or from the stored
# `mimetype` entry ODF puts first. Entry names appear in each local header and again in the
# central directory at the end, so the first and last 64 KB are enough (and bounded).
_ZIP_WINDOW = 64 * 1024
_OFFICE_PARTS = (
    (b"word/document", "a Word document (.docx)"),
    (b"xl/workbook", "an Excel workbook (.xlsx)"),
    (b"ppt/presentation", "a PowerPoint presentation (.pptx)"),
)
_OPENDOCUMENT = b"mimetypeapplication/vnd.oasis.opendocument."
_OPENDOCUMENT_KINDS = (
    (b"text", "an OpenDocument text (.odt)"),
    (b"spreadsheet", "an OpenDocument spreadsheet (.ods)"),
    (b"presentation", "an OpenDocument presentation (.odp)"),
)


def sniff_mime(data: bytes) -> str:
    """The image type from its magic bytes; refuses anything but the accepted raster formats."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    found = describe(data) or "unknown (not a PNG, JPEG, WebP, GIF, BMP or TIFF image)"
    raise ImageRejected(f"unsupported image format: {found}")


def describe(data: bytes) -> str | None:
    """A name for a refused payload (None if unknown), so the client learns what it sent."""
    head = data[:1024]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "image/heic"
        return "video/mp4"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    signatures = [
        (b"%pdf-", "application/pdf"),
        (b"\x00\x00\x00\x0cjp  ", "image/jp2"),
        (b"\xff\x4f\xff\x51", "image/jp2"),
        (b"\x00\x00\x01\x00", "image/x-icon"),
        (b"8bps", "image/vnd.adobe.photoshop"),
        (b"\x1f\x8b", "application/gzip"),
        (b"<!doctype html", "text/html"),
        (b"<html", "text/html"),
    ]
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    for magic, name in signatures:
        if text.startswith(magic):
            return name
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in text:
        return "image/svg+xml"
    if text.startswith((b"{", b"[")):
        return "application/json"
    return None


def _zip_kind(data: bytes) -> str:
    """What a ZIP holds, when it is an Office or OpenDocument file; else `application/zip`."""
    if data[30 : 30 + len(_OPENDOCUMENT)] == _OPENDOCUMENT:
        kind = data[30 + len(_OPENDOCUMENT) : 30 + len(_OPENDOCUMENT) + 12]
        for prefix, name in _OPENDOCUMENT_KINDS:
            if kind.startswith(prefix):
                return name
    ends = data[:_ZIP_WINDOW] + data[-_ZIP_WINDOW:]
    if b"[Content_Types].xml" in ends:
        for part, name in _OFFICE_PARTS:
            if part in ends:
                return name
    return "application/zip"
