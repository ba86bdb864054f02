"""Shared fixtures: one fake vLLM per session, gateways started per module or per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asgi_support import slow_down_image_work
from tests.support import (
    FakeVLLMProcess,
    Process,
    SilentPort,
    gateway_env,
    guarded,
    start_fake_vllm,
    start_gateway,
    start_readme_gateway,
)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeVLLMProcess]:
    fake = start_fake_vllm()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_server: FakeVLLMProcess) -> FakeVLLMProcess:
    """The session's fake vLLM, with behaviours and recorded requests cleared."""
    fake_server.reset()
    return fake_server


@pytest.fixture(scope="module")
def passthrough_gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    gateway = start_gateway(gateway_env(fake_server.port, prompt_mode="passthrough"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def ocrflux_gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    gateway = start_gateway(gateway_env(fake_server.port, prompt_mode="ocrflux"))
    yield gateway
    gateway.stop()


@pytest.fixture
def make_gateway(fake_server: FakeVLLMProcess) -> Iterator[Callable[..., Process]]:
    """Start a gateway with extra settings (stopped after the test)."""
    started: list[Process] = []

    def make(upstream_port: int | None = None, **settings: Any) -> Process:
        env = gateway_env(upstream_port or fake_server.port, **settings)
        gateway = start_gateway(env)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def slow_image_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every pixel job takes 0.3 s (in-process apps); the list records each one that starts."""
    return slow_down_image_work(monkeypatch)


@pytest.fixture(scope="session")
def silent_vllm_port() -> Iterator[SilentPort]:
    """Where the local gateway's vLLM would be: nothing may ever connect to it."""
    port = SilentPort()
    yield port
    port.close()


@pytest.fixture(scope="session")
def netguard_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Network attempts beyond loopback by the local gateway's processes (none expected)."""
    return tmp_path_factory.mktemp("netguard") / "attempts.log"


@pytest.fixture(scope="session")
def local_gateway(silent_vllm_port: SilentPort, netguard_log: Path) -> Iterator[Process]:
    """`OCR_BACKEND=local`, started by the README's own command, with no vLLM anywhere and
    every process under the network guard (one per session: loading the models takes a while).
    """
    gateway = start_readme_gateway(guarded(gateway_env(silent_vllm_port.port), netguard_log))
    yield gateway
    gateway.stop()
