"""Logs carry the request id and never carry keys, image bodies or prompts."""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable

import httpx
import orjson
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


def test_an_invalid_request_id_is_replaced_in_the_response_and_upstream(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for bad in ("two words", "bracket]", "x" * 200):
        response = httpx.post(
            f"{passthrough_gateway.url}/v1/chat/completions",
            json=body,
            headers={"X-Request-ID": bad},
            timeout=30,
        )
        assert response.status_code == 200
        fresh = response.headers["x-request-id"]
        assert fresh != bad and len(fresh) == 32
        assert fake.requests()[-1]["headers"]["x-request-id"] == fresh


def test_a_client_leaving_mid_body_is_one_info_line(fake: FakeVLLMProcess) -> None:
    gateway = start_gateway(gateway_env(fake.port, prompt_mode="passthrough", capture_stderr="1"))
    try:
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: 100000\r\n"
                b"x-request-id: leaver-1\r\n\r\n" + b'{"model": "m", "mess'
            )
            time.sleep(0.3)  # the gateway is now waiting for the rest of the body
        time.sleep(0.5)
    finally:
        gateway.stop()
    assert gateway.proc.stderr is not None
    log = gateway.proc.stderr.read().decode()
    lines = [line for line in log.splitlines() if "leaver-1" in line]
    assert len(lines) == 1, log
    assert " INFO " in lines[0] and " 499 " in lines[0] and "client disconnected" in lines[0]
    assert "Traceback" not in log and " ERROR " not in log


def test_json_logs_have_one_object_per_request_with_its_fields(fake: FakeVLLMProcess) -> None:
    env = gateway_env(fake.port, prompt_mode="passthrough", log_format="json", capture_stderr="1")
    gateway = start_gateway(env)
    try:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"X-Request-ID": "json-7"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        gateway.stop()
    assert gateway.proc.stderr is not None
    records = [orjson.loads(line) for line in gateway.proc.stderr.read().splitlines() if line]
    # Other records may carry the request id too (an upstream retry's warning, under load):
    # every record is one JSON object, and the request has exactly one access record.
    assert all(isinstance(r, dict) and "request_id" in r for r in records)
    mine = [r for r in records if r["request_id"] == "json-7"]
    assert all(r["logger"].startswith(("ocrflux", "uvicorn")) for r in mine), mine
    (access,) = [r for r in mine if r["logger"] == "ocrflux.access"]
    assert access["logger"] == "ocrflux.access" and access["level"] == "INFO"
    assert access["status"] == 200 and access["route"] == "/v1/chat/completions"
    assert access["replicas"] == [f"127.0.0.1:{fake.port}"] and access["retries"] == 0
    assert access["pages"] == 0 and access["latency_ms"] > 0 and access["bytes_in"] > 0


def test_json_logs_of_a_retried_request_have_its_warning_and_one_access_record(
    fake: FakeVLLMProcess,
) -> None:
    env = gateway_env(fake.port, prompt_mode="passthrough", log_format="json", capture_stderr="1")
    gateway = start_gateway(env)
    fake.control(fail=[503])  # the first attempt fails, the retry answers
    try:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers={"X-Request-ID": "json-8"},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        gateway.stop()
    assert gateway.proc.stderr is not None
    records = [orjson.loads(line) for line in gateway.proc.stderr.read().splitlines() if line]
    mine = [r for r in records if r["request_id"] == "json-8"]
    assert [(r["logger"], r["level"]) for r in mine] == [
        ("ocrflux.upstream", "WARNING"),
        ("ocrflux.access", "INFO"),
    ]
    assert mine[0]["message"] == (
        f"upstream http://127.0.0.1:{fake.port} failed (status_503), attempt 1/2"
    )
    assert mine[1]["status"] == 200 and mine[1]["retries"] == 1
