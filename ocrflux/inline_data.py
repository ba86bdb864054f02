"""Big inline documents kept as the request body's bytes, never as one huge Python string.

A 45 MB base64 PDF inside a JSON body cost ~0.7 s on the event loop: orjson built a 45 MB
string, `split_inline` copied it, base64 decoded it, each holding the GIL throughout (a thread
would not have helped). So the HTTP layer cuts such payloads out of the body before parsing
(`ocrflux.http.json_body`): the string the request models see is a short placeholder, and the
payload stays a view of the body's bytes here, for the request that sent it, until the
document loader takes it (and decodes it off the loop, in slices). Only document payloads
(a PDF or TIFF data URL of at least `MIN_BYTES`) are cut out: images keep their path.
"""

from __future__ import annotations

import os
from contextvars import ContextVar

# A payload this long (base64 characters) or longer is kept as bytes.
MIN_BYTES = 1 << 20
# The data URL MIME types cut out: what only the document loader reads.
DOCUMENT_MIMES = (b"application/pdf", b"image/tiff", b"image/tif")
# Not base64 (`~`), so a placeholder can never be decoded as if it were the payload.
_MARK = "~ocrflux-inline-"

_payloads: ContextVar[dict[str, memoryview] | None] = ContextVar(
    "ocrflux_inline_payloads", default=None
)


def start() -> None:
    """Keep payloads for the current task from now on (a request, a batch line): it and every
    task or thread it starts see them. Without it, nothing is cut out of a body."""
    _payloads.set({})


def active() -> bool:
    return _payloads.get() is not None


def keep(payload: memoryview) -> str:
    """Keep `payload` (base64 bytes) for the current task (`start` first); the base64 text
    to put in its place (a placeholder, unique to this request)."""
    kept = _payloads.get()
    assert kept is not None, "inline_data.start() was not called"
    key = f"{_MARK}{os.urandom(6).hex()}-{len(kept)}"
    kept[key] = payload
    return key


def _key(url: str) -> str | None:
    head = url[:128]
    at = head.find(_MARK)
    if at < 0 or head[:5].lower() != "data:":
        return None
    return url[at:]


def holds(url: str) -> bool:
    """True when `url` is the placeholder of a payload the current request kept."""
    kept = _payloads.get()
    key = _key(url) if kept else None
    return key is not None and kept is not None and key in kept


def take(url: str) -> memoryview | None:
    """The base64 bytes behind a placeholder (forgotten here: the caller owns them), or None
    when `url` is not one of the current request's placeholders."""
    kept = _payloads.get()
    if not kept:
        return None
    key = _key(url)
    return None if key is None else kept.pop(key, None)
