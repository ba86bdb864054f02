"""Liveness, readiness and the start-up model-name check, against real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import (
    ROOT,
    FakeVLLMProcess,
    Process,
    free_port,
    gateway_env,
    start_fake_vllm,
)


def test_health_is_fast_and_reports_the_last_upstream_check(
    make_gateway: Callable[..., Process],
) -> None:
    fake = start_fake_vllm()
    try:
        started = time.time()
        gateway = make_gateway(upstream_port=fake.port, prompt_mode="passthrough")
        first = httpx.get(f"{gateway.url}/health").json()
        assert first["status"] == "ok"
        (replica,) = first["upstream"]
        assert replica["url"] == f"http://127.0.0.1:{fake.port}"
        assert replica["reachable"] is True  # checked at start-up
        assert started <= replica["checked_at"] <= time.time()
    finally:
        fake.stop()
    # vLLM is gone, and no background check runs here (HEALTH_CHECK_INTERVAL=0): /health
    # answers at once from the last check, without calling vLLM (it would find it down).
    again = httpx.get(f"{gateway.url}/health", timeout=2).json()
    assert again["upstream"] == [replica]


def test_ready_follows_the_upstream(make_gateway: Callable[..., Process]) -> None:
    fake = start_fake_vllm()
    try:
        gateway = make_gateway(
            upstream_port=fake.port, prompt_mode="passthrough", ready_cache_seconds=0
        )
        ready = httpx.get(f"{gateway.url}/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        fake.control(health_status=503)
        assert httpx.get(f"{gateway.url}/ready").status_code == 503
    finally:
        fake.stop()
    gone = httpx.get(f"{gateway.url}/ready")
    assert gone.status_code == 503
    assert gone.json()["upstream"][0]["reachable"] is False
    assert httpx.get(f"{gateway.url}/health").json()["upstream"][0]["reachable"] is False


def test_model_name_mismatch_is_reported_in_log_and_ready() -> None:
    fake = start_fake_vllm(served_model_name="/models/OCRFlux-3B")
    env = gateway_env(fake.port, prompt_mode="passthrough")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.api_server"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{env['API_PORT']}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url}/ready")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert ready.status_code == 503
        mismatch = ready.json()["upstream"][0]["model_mismatch"]
        assert "OCRFLUX_MODEL='ChatDOC/OCRFlux-3B'" in mismatch
        assert "/models/OCRFlux-3B" in mismatch
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
        fake.stop()
    lines = [line for line in stderr.splitlines() if "model name mismatch" in line]
    assert len(lines) == 1
    assert "--served-model-name ChatDOC/OCRFlux-3B" in lines[0]


def run_server(**env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = gateway_env(free_port())
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.api_server"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_settings_stop_start_up_with_one_line_naming_the_variable() -> None:
    for name, value in [
        ("API_PORT", "abc"),
        ("MAX_RETRIES", "-1"),
        ("VLLM_URL", "localhost"),
        ("VLLM_URL", "http://vllm:8000"),
        ("PROMPT_MODE", "magic"),
        ("REMOTE_IMAGE_ALLOWLIST", "10.0.0.0/99"),
    ]:
        result = run_server(**{name: value})
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"ocrflux: invalid {name}=")
        assert "Traceback" not in result.stderr


def test_non_ascii_api_keys_stop_start_up_with_one_line_that_hides_them() -> None:
    result = run_server(API_KEYS="k1,clé-secrète")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "ocrflux: invalid API_KEYS=<hidden>: keys must be printable ASCII (a client cannot send "
        "others)"
    ]


def test_secrets_are_not_echoed_in_setting_errors() -> None:
    result = run_server(VLLM_API_KEY="", API_KEYS="hunter2", API_PORT="0")
    assert "hunter2" not in result.stderr
    assert result.returncode == 2


def test_env_file_is_read(tmp_path: os.PathLike[str]) -> None:
    from ocrflux.settings import Settings

    env_file = os.path.join(tmp_path, ".env")
    with open(env_file, "w") as handle:
        handle.write("MAX_RETRIES=4\nAPI_KEYS=a, b\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.max_retries == 4
    assert settings.api_keys == ["a", "b"]


def test_sigterm_turns_ready_to_503_draining_at_once(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    # The fast suite's copy of the load suite's case (d): a /ready in flight when SIGTERM
    # comes answers 503 draining, and an in-flight request still completes.
    gateway = make_gateway(prompt_mode="passthrough", shutdown_grace=10, ready_cache_seconds=0)
    before = httpx.get(f"{gateway.url}/ready", timeout=5)
    assert (before.status_code, before.json()["status"]) == (200, "ready")
    fake.control(health_delay=1.0, delay=1.5)  # the check and the answer are still running
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with ThreadPoolExecutor(2) as pool:
        ready = pool.submit(httpx.get, f"{gateway.url}/ready", timeout=10)
        answer = pool.submit(
            httpx.post, f"{gateway.url}/v1/chat/completions", json=chat, timeout=10
        )
        time.sleep(0.4)  # both are in flight
        gateway.proc.send_signal(signal.SIGTERM)
        during = ready.result()
        completed = answer.result()
    assert (during.status_code, during.json()["status"]) == (503, "draining")
    assert completed.status_code == 200
    assert completed.json()["choices"][0]["message"]["content"] == "Hello from the fake vLLM."
    assert gateway.proc.wait(timeout=15) in (0, -signal.SIGTERM)
