"""The load and fault suite: its marker, and the table it prints at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Row:
    scenario: str
    requests: int
    ok: int
    limited: int  # 429
    unavailable: int  # 503
    other: int
    p50_ms: float
    p99_ms: float
    notes: str


ROWS: list[Row] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    write = terminalreporter.write_line
    write("")
    write("load and fault suite (loopback, fake vLLM replicas with a bounded capacity):")
    write("")
    write("| scenario | requests | 200 | 429 | 503 | other | p50 ms | p99 ms | notes |")
    write("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in ROWS:
        write(
            f"| {r.scenario} | {r.requests} | {r.ok} | {r.limited} | {r.unavailable} "
            f"| {r.other} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.notes} |"
        )
