"""The SSE model rewriter: exact, cheap in the common case, correct in the odd one."""

from __future__ import annotations

import orjson

from ocrflux.http.sse import DONE, ModelRewriter


def test_compact_json_is_rewritten_by_bytes() -> None:
    rewrite = ModelRewriter("ChatDOC/OCRFlux-3B", 'my "model"')
    events = (
        b'data: {"id":"1","model":"ChatDOC/OCRFlux-3B","choices":[]}\n\n'
        b'data: {"id":"2","model":"ChatDOC/OCRFlux-3B","choices":[]}\n\n' + DONE
    )
    out = rewrite(events).split(b"\n\n")
    assert orjson.loads(out[0][6:])["model"] == 'my "model"'
    assert orjson.loads(out[1][6:])["model"] == 'my "model"'
    assert out[2] == b"data: [DONE]"


def test_spaced_json_is_parsed_and_rewritten() -> None:
    rewrite = ModelRewriter("up", "client")
    out = rewrite(b'data: {"model": "up", "choices": []}\n\n')
    assert orjson.loads(out.split(b"\n")[0][6:]) == {"model": "client", "choices": []}


def test_content_that_mentions_the_model_is_untouched() -> None:
    rewrite = ModelRewriter("up", "client")
    event = orjson.dumps({"model": "up", "choices": [{"delta": {"content": '"model":"up"'}}]})
    out = orjson.loads(rewrite(b"data: " + event + b"\n\n")[6:])
    assert out["model"] == "client"
    assert out["choices"][0]["delta"]["content"] == '"model":"up"'
