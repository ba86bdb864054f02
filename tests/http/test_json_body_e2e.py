"""Request-body depth through the HTTP door: exactly MAX_DEPTH levels pass, one more is a 400."""

from __future__ import annotations

import httpx
import pytest

from ocrflux.http.json_body import MAX_DEPTH
from tests.support import FakeVLLMProcess, Process


def chat_body_nested(levels: int) -> bytes:
    """A chat request `levels` deep: the top object (level 1) holds `extra`, levels - 1 arrays.

    Its messages add three more containers, so the body has more than MAX_DEPTH of them and
    the depth walk really runs (a body with fewer containers cannot be that deep: skipped).
    """
    arrays = levels - 1
    return (
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"extra":'
        + b"[" * arrays
        + b"1"
        + b"]" * arrays
        + b"}"
    )


def test_the_limit_is_128_levels() -> None:
    assert MAX_DEPTH == 128  # README: "JSON nested more than 128 levels deep is refused"


def test_a_body_exactly_max_depth_deep_is_accepted_and_forwarded(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    body = chat_body_nested(128)
    assert body.count(b"[") + body.count(b"{") == 130  # > 128: the walk runs
    response = httpx.post(
        f"{passthrough_gateway.url}/v1/chat/completions", content=body, timeout=30
    )
    assert response.status_code == 200, response.text
    (call,) = fake.requests()
    depth, value = 1, call["body"]["extra"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert (depth, value) == (128, 1)  # reached vLLM whole


@pytest.mark.parametrize("levels", [129, 130])
def test_a_body_one_level_past_max_depth_is_refused(
    passthrough_gateway: Process, fake: FakeVLLMProcess, levels: int
) -> None:
    response = httpx.post(
        f"{passthrough_gateway.url}/v1/chat/completions",
        content=chat_body_nested(levels),
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    # The walk stops at the first level past the limit: 129 found either way.
    assert error["message"] == "request body is nested more than 128 levels deep (found 129)"
    assert fake.requests() == []
