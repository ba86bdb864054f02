"""Parsing request bodies (ocrflux.http.json_body): structure counted first, depth bounded."""

from __future__ import annotations

import base64
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest

from ocrflux import inline_data
from ocrflux.errors import APIError
from ocrflux.http.json_body import MAX_DEPTH, BodyShape, nesting_depth, parse_object
from ocrflux.intake.image_input import ImageRejected, decode_base64_view

T = TypeVar("T")


def shape_of(*chunks: bytes) -> BodyShape:
    shape = BodyShape()
    for chunk in chunks:
        shape.add(chunk)
    return shape


def nested(lists: int) -> object:
    value: object = 1
    for _ in range(lists):
        value = [value]
    return value


def body_nested(levels: int) -> bytes:
    """A request body `levels` deep: the top object holding levels - 1 nested arrays."""
    return b'{"model":"m","extra":' + b"[" * (levels - 1) + b"1" + b"]" * (levels - 1) + b"}"


def test_shape_counts_commas_and_opening_brackets_across_chunks() -> None:
    shape = shape_of(b'{"a": [1, 2', b', {"b": 3}], "c": ""}')
    assert (shape.commas, shape.containers, shape.items) == (3, 3, 6)


def test_data_url_payloads_are_skipped_wherever_the_chunks_split_them() -> None:
    body = (
        b'{"a": [1, {"url": "data:image/png;base64,QUJD+/=="}, 2], '
        b'"b": "x;base64,,,[{", "c": [3, 4]}'
    )
    # By hand: outside the two payloads (each from ";base64," to the next quote) there are
    # 5 commas and 4 opening brackets; counting everything finds 9 and 6.
    whole = shape_of(body)
    assert (whole.commas, whole.containers) == (5, 4)
    assert (body.count(b","), body.count(b"[") + body.count(b"{")) == (9, 6)
    starts = [i for i in range(len(body)) if body.startswith(b";base64,", i)]
    inside_a_marker = {cut for i in starts for cut in range(i + 1, i + len(b";base64,"))}
    for cut in range(len(body) + 1):
        shape = shape_of(body[:cut], body[cut:])
        if cut in inside_a_marker:  # that payload is then counted: more, never less
            assert 5 <= shape.commas <= 9 and 4 <= shape.containers <= 6, cut
        else:
            assert (shape.commas, shape.containers) == (5, 4), cut


def test_values_after_a_payload_are_counted() -> None:
    parts = b",".join([b"[]"] * 500)
    body = b'{"u": "data:x;base64,AAAA", "v": [' + parts + b"]}"
    shape = shape_of(body)
    assert shape.commas == 500 and shape.containers == 502


def test_parsing_is_refused_when_the_items_exceed_the_limit() -> None:
    parts = b",".join([b'{"type":"text","text":""}'] * 2000)
    body = b'{"model":"m","messages":[{"role":"user","content":[' + parts + b"]}]}"
    with pytest.raises(APIError) as caught:
        parse_object(body, shape_of(body), max_items=1000)
    assert caught.value.status == 400 and caught.value.code == "request_too_complex"
    assert "up to 6,005 JSON items" in caught.value.message
    assert "the limit is 1,000" in caught.value.message
    assert len(parse_object(body, shape_of(body), max_items=10_000)["messages"]) == 1


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 255, 1024])
def test_nesting_beyond_the_limit_is_a_400_not_a_failure_to_reencode(levels: int) -> None:
    body = body_nested(levels)
    with pytest.raises(APIError) as caught:
        parse_object(body, shape_of(body), max_items=10_000)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    assert f"more than {MAX_DEPTH} levels" in caught.value.message


def test_nesting_at_the_limit_is_accepted_and_can_be_reencoded() -> None:
    body = body_nested(MAX_DEPTH)
    data = parse_object(body, shape_of(body), max_items=10_000)
    assert orjson.dumps({"wrapper": [data]})  # room left for the gateway's own envelopes


def test_not_json_and_not_an_object() -> None:
    for body, words in [(b"{nope", "not valid JSON"), (b"[1]", "must be a JSON object")]:
        with pytest.raises(APIError, match=words):
            parse_object(body, shape_of(body), max_items=100)


def test_nesting_depth() -> None:
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [1, {"b": []}], "c": "[[["}) == 4
    assert nesting_depth(nested(300)) == 300
    assert nesting_depth(nested(300), stop_after=10) == 11
    assert nesting_depth(orjson.loads(body_nested(1024))) == 1024


# --- big inline documents (issue 18 item 5): cut out of the body, kept as bytes ---------------

PAYLOAD = base64.b64encode(bytes(range(256)) * 5000).decode()  # 1.7 MB of base64


def document_body(url: str) -> bytes:
    return orjson.dumps({"model": "m", "document": {"type": "document_url", "document_url": url}})


def in_a_request(work: Callable[[], T]) -> T:
    """Run `work` in a context of its own (the way a request's task has one)."""
    return contextvars.copy_context().run(work)


def parse_in_chunks(body: bytes, size: int = 65536) -> dict[str, Any]:
    shape = shape_of(*(body[i : i + size] for i in range(0, len(body), size)))
    return parse_object(body, shape, 100)


def test_a_big_document_payload_is_parsed_as_a_placeholder_and_kept_as_bytes() -> None:
    def work() -> tuple[str, bytes | None, object]:
        inline_data.start()
        url = parse_in_chunks(document_body(f"data:application/pdf;base64,{PAYLOAD}"))["document"][
            "document_url"
        ]
        kept = inline_data.take(url)
        return url, None if kept is None else bytes(kept), inline_data.take(url)

    url, kept, again = in_a_request(work)
    assert url.startswith("data:application/pdf;base64,~ocrflux-inline-") and len(url) < 80
    assert kept == PAYLOAD.encode()
    assert again is None  # taken once: the body can be let go of


@pytest.mark.parametrize(
    "url",
    [
        f"data:image/png;base64,{PAYLOAD}",  # an image keeps its own path
        f"data:application/pdf;name=a.pdf;base64,{PAYLOAD}",
        f"see data:application/pdf;base64,{PAYLOAD}",  # not a whole data URL: text
        f"data:application/pdf;base64,{PAYLOAD[:4000]}",  # small
    ],
)
def test_other_payloads_stay_in_the_parsed_body(url: str) -> None:
    def work() -> str:
        inline_data.start()
        return parse_in_chunks(document_body(url))["document"]["document_url"]

    assert in_a_request(work) == url


def test_an_escaped_payload_and_a_body_outside_a_request_stay_as_they_are() -> None:
    url = f"data:application/pdf;base64,{PAYLOAD}"
    escaped = document_body(url).replace(b"/", b"\\/")  # JSON allows `\/`

    def with_start() -> str:
        inline_data.start()
        return parse_in_chunks(escaped)["document"]["document_url"]

    def without_start() -> str:
        return parse_in_chunks(document_body(url))["document"]["document_url"]

    assert in_a_request(with_start) == url
    assert in_a_request(without_start) == url


def test_a_kept_payload_decodes_off_the_loop_strictly_or_forgivingly() -> None:
    data = bytes(range(256)) * 5000
    strict = memoryview(base64.b64encode(data))
    assert decode_base64_view(strict, len(data)) == data
    urlsafe = memoryview(base64.urlsafe_b64encode(data).rstrip(b"="))
    assert decode_base64_view(urlsafe, len(data)) == data
    with pytest.raises(ImageRejected, match="not valid base64"):
        decode_base64_view(memoryview(b"~~~~" * 1000), 1 << 20)
    with pytest.raises(ImageRejected) as caught:
        decode_base64_view(strict, 1000)
    assert caught.value.status == 413
