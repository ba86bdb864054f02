"""Logs carry the request id and never carry keys, image bodies or prompts."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import httpx
from PIL import Image

from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway


def test_logs_have_request_ids_and_no_secrets_or_images(fake: FakeVLLMProcess) -> None:
    env = gateway_env(
        fake.port,
        prompt_mode="passthrough",
        debug="true",
        api_keys="sk-very-secret-key",
        vllm_api_key="vk-upstream-secret",
        capture_stderr="1",
    )
    gateway = start_gateway(env)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    b64 = base64.b64encode(buffer.getvalue()).decode()
    prompt = "A very particular user prompt that must stay out of the logs"
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
                ],
            }
        ],
    }
    try:
        ok = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer sk-very-secret-key", "X-Request-ID": "trace-42"},
            timeout=30,
        )
        assert ok.status_code == 200
        denied = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer wrong-key-123"},
            timeout=30,
        )
        assert denied.status_code == 401
    finally:
        gateway.stop()
    assert gateway.proc.stderr is not None
    log = gateway.proc.stderr.read().decode()
    assert "[trace-42] POST /v1/chat/completions 200" in log
    for secret in ("sk-very-secret-key", "vk-upstream-secret", "wrong-key-123", b64[:40], prompt):
        assert secret not in log


def test_total_timeout_gives_504(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", total_timeout=0.5)
    fake.control(delay=1.5)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        timeout=30,
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
