"""Parsing a JSON request body without letting its shape stall the event loop or crash later.

orjson parses on the event loop and holds the GIL (a thread would not help): what it costs is
set by the number of values, not bytes. 60 MB of `[],` took 10.8 s, 2,000,000 empty text
parts 1.7 s (then pydantic another 9 s), while 60 MB of base64 takes 0.1 s. The commas and
opening brackets of a body bound how many values parsing creates, and counting them runs at
memchr speed, chunk by chunk as the body arrives: a body with too many is refused unparsed.

orjson reads 1024 levels of nesting but writes only 254: a deeper field would fail when the
gateway re-encodes the body for vLLM (a 500, or a stream cut short). Depth is checked up front.
"""

from __future__ import annotations

from typing import Any

import orjson

from ocrflux import inline_data
from ocrflux.errors import APIError

# Deeper than any real request (a JSON schema in response_format rarely passes 20); well inside
# what orjson can serialise (254), leaving room for the envelopes the gateway wraps around it.
MAX_DEPTH = 128


# Where a data URL's payload starts. From there to the next quote there is only base64 (no
# comma or bracket in a real payload), so that stretch, nearly all of a page request, is not
# scanned: counting it cost 0.5 ms per 0.28 MB page, three times what parsing it costs.
_PAYLOAD = b";base64,"


class BodyShape:
    """Commas and opening brackets seen so far in a JSON body (count each chunk as it arrives).

    What lies between `;base64,` and the next `"` is skipped. Skipping cannot hide values:
    that stretch ends at or before the end of the string it started in, so whatever it holds
    is string content; and a `;base64,` outside any string is invalid JSON, where parsing
    stops before reaching anything skipped. Stretches of `inline_data.MIN_BYTES` or more are
    noted (`payloads`: offsets in the body) for `parse_object` to cut out (when the caller
    called `inline_data.start()`: it will hand them to the document loader).
    """

    __slots__ = ("_in_payload", "_offset", "_started", "commas", "containers", "payloads")

    def __init__(self) -> None:
        self.commas = 0
        self.containers = 0
        self.payloads: list[tuple[int, int]] = []
        self._in_payload = False  # a chunk ended inside a payload
        self._offset = 0  # of the chunk being added, in the body
        self._started = 0  # where the current payload starts, in the body

    def add(self, chunk: bytes) -> None:
        base = self._offset
        self._offset += len(chunk)
        start, end = 0, len(chunk)
        while start < end:
            if self._in_payload:
                close = chunk.find(b'"', start)
                if close < 0:
                    return
                self._in_payload = False
                if base + close - self._started >= inline_data.MIN_BYTES:
                    self.payloads.append((self._started, base + close))
                start = close
            payload = chunk.find(_PAYLOAD, start)
            stop = end if payload < 0 else payload
            self.commas += chunk.count(b",", start, stop)
            self.containers += chunk.count(b"[", start, stop) + chunk.count(b"{", start, stop)
            if payload < 0:
                return
            self._in_payload = True
            start = payload + len(_PAYLOAD)
            self._started = base + start

    @property
    def items(self) -> int:
        """An upper bound of the array items and object members parsing would create."""
        return self.commas + self.containers


def too_complex(shape: BodyShape, limit: int) -> APIError:
    return APIError(
        400,
        f"request body has up to {shape.items:,} JSON items (counting commas and brackets), "
        f"the limit is {limit:,}",
        code="request_too_complex",
    )


def parse_object(body: bytes | bytearray, shape: BodyShape, max_items: int) -> dict[str, Any]:
    """The body as a JSON object, or APIError(400) saying what is wrong with it."""
    if shape.items > max_items:
        raise too_complex(shape, max_items)
    if shape.payloads and inline_data.active():
        body = _cut_out_documents(body, shape.payloads)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    # Nesting deeper than MAX_DEPTH needs that many containers: most bodies skip the walk.
    if shape.containers > MAX_DEPTH and (depth := nesting_depth(data, MAX_DEPTH)) > MAX_DEPTH:
        raise APIError(
            400,
            f"request body is nested more than {MAX_DEPTH} levels deep (found {depth})",
            code="invalid_json",
        )
    return data


def _cut_out_documents(
    body: bytes | bytearray, payloads: list[tuple[int, int]]
) -> bytes | bytearray:
    """`body` with each big document payload replaced by a placeholder (`ocrflux.inline_data`
    keeps the payload as a view of `body`), so parsing never builds a huge string.

    Only a payload that is a whole JSON string `"data:<document MIME>;base64,<payload>"` with
    no escape in it: its string value is exactly the data URL, and the placeholder stands for
    it. Anything else is parsed as it is.
    """
    view = memoryview(body)
    parts: list[bytes | memoryview] = []
    done = 0
    for start, end in payloads:
        opening = body.rfind(b'"', max(0, start - 64), start)
        if opening < 0 or body.find(b"\\", start, end) >= 0:
            continue
        prefix = bytes(body[opening + 1 : start]).lower()
        mime = prefix[5:].partition(b";")[0]
        if not prefix.startswith(b"data:") or prefix.count(b";") != 1:
            continue
        if mime not in inline_data.DOCUMENT_MIMES:
            continue
        parts += [view[done:start], inline_data.keep(view[start:end]).encode()]
        done = end
    if not parts:
        return body
    parts.append(view[done:])
    return b"".join(parts)


def nesting_depth(value: Any, stop_after: int = 1024) -> int:
    """Levels of arrays/objects in a parsed JSON value (the top object is level 1).

    Stops looking once a level past `stop_after` is found (enough to refuse the body).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, level)
        if deepest > stop_after:
            break
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest
