"""The abuse suite: gateways to attack, and the worst /health figure of each case, printed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

# (case, worst /health latency in ms, pings) of every case run, for the summary.
RESULTS: list[tuple[str, float, int]] = []


@pytest.fixture(scope="module")
def passthrough(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    env = gateway_env(
        fake_server.port,
        prompt_mode="passthrough",
        request_header_timeout=2,
        request_body_timeout=3,
    )
    gateway = start_gateway(env)
    yield gateway
    gateway.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("abuse suite: worst GET /health latency during each attack")
    for case, worst, pings in RESULTS:
        terminalreporter.write_line(f"{case:<52} {worst:9.1f} ms  ({pings} pings)")
