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
    stops before reaching anything skipped.
    """

    __slots__ = ("_in_payload", "commas", "containers")

    def __init__(self) -> None:
        self.commas = 0
        self.containers = 0
        self._in_payload = False  # a chunk ended inside a payload

    def add(self, chunk: bytes) -> None:
        start, end = 0, len(chunk)
        while start < end:
            if self._in_payload:
                close = chunk.find(b'"', start)
                if close < 0:
                    return
                self._in_payload = False
                start = close
            payload = chunk.find(_PAYLOAD, start)
            stop = end if payload < 0 else payload
            self.commas += chunk.count(b",", start, stop)
            self.containers += chunk.count(b"[", start, stop) + chunk.count(b"{", start, stop)
            if payload < 0:
                return
            self._in_payload = True
            start = payload + len(_PAYLOAD)

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
