"""/ready follows the real vLLM: down -> 503, wrong served name -> 503 saying so, right -> 200.

This stops and restarts the session's server (two cold starts, ~1-2 minutes); the `vllm`
fixture brings it back for later tests if this one fails half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.real_vllm.conftest import sdk
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME, RealVLLM
from tests.support import Process

pytestmark = pytest.mark.real_vllm

OTHER_MODEL = "someone/other-model"


def _ready(gateway: Process) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{gateway.url}/ready", timeout=30)
    return response.status_code, response.json()


def test_ready_follows_the_server(make_gateway: Callable[..., Process], vllm: RealVLLM) -> None:
    # No background polling and no /ready cache: every /ready call checks vLLM there and then.
    gateway = make_gateway(
        prompt_mode="passthrough", health_check_interval=0, ready_cache_seconds=0, max_retries=0
    )

    status, body = _ready(gateway)
    assert status == 200, body
    assert body["upstream"][0]["served_models"] == [DEFAULT_MODEL_NAME]

    vllm.stop()
    status, body = _ready(gateway)
    assert status == 503, body
    assert body["upstream"][0]["reachable"] is False
    # A request meanwhile is an OpenAI-shaped upstream error, not a crash.
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway.url).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert info.value.status_code in (502, 503)

    vllm.start(served_model_name=OTHER_MODEL)
    status, body = _ready(gateway)
    assert status == 503, body
    replica = body["upstream"][0]
    assert replica["reachable"] is True
    assert replica["served_models"] == [OTHER_MODEL]
    assert OTHER_MODEL in replica["model_mismatch"]
    assert DEFAULT_MODEL_NAME in replica["model_mismatch"]

    vllm.restart(DEFAULT_MODEL_NAME)
    status, body = _ready(gateway)
    assert status == 200, body
    assert body["upstream"][0]["model_mismatch"] is None
