"""Fixtures for suites that run against the real vLLM (CPU build) with the tiny test model.

Run with `python -m pytest -m real_vllm tests/real_vllm` after
`scripts/real_vllm/setup_env.sh` (or just `scripts/real_vllm/run_suite.sh`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME, RealVLLM, check_installed
from tests.support import Process, gateway_env, start_gateway

# Generous: the first request after start-up warms the vision path on a slow 2-core box.
REQUEST_TIMEOUT = 180.0
GATEWAY_START_TIMEOUT = 60.0


def sdk(base_url: str) -> openai.OpenAI:
    """The official client, with its own retries off so every failure is visible."""
    return openai.OpenAI(
        base_url=base_url + "/v1", api_key="x", timeout=REQUEST_TIMEOUT, max_retries=0
    )


@pytest.fixture(scope="session")
def real_vllm() -> Iterator[RealVLLM]:
    """One real vLLM for the session, serving the tiny model as ChatDOC/OCRFlux-3B."""
    try:
        check_installed()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = RealVLLM(name="session")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def vllm(real_vllm: RealVLLM) -> RealVLLM:
    """The session's server, brought back if an earlier test stopped or renamed it."""
    if not real_vllm.running or real_vllm.served_model_name != DEFAULT_MODEL_NAME:
        real_vllm.restart(DEFAULT_MODEL_NAME)
    return real_vllm


@pytest.fixture
def direct(vllm: RealVLLM) -> openai.OpenAI:
    """The SDK talking to vLLM itself: the reference every gateway answer is held to."""
    return sdk(vllm.url)


@pytest.fixture
def make_gateway(vllm: RealVLLM) -> Iterator[Callable[..., Process]]:
    """Start gateways in front of the real vLLM (or `upstream_port`); stopped after the test."""
    started: list[Process] = []

    def make(upstream_port: int | None = None, **settings: Any) -> Process:
        settings.setdefault("max_model_len", vllm.max_model_len)
        env = gateway_env(upstream_port or vllm.port, **settings)
        gateway = start_gateway(env, timeout=GATEWAY_START_TIMEOUT)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()
