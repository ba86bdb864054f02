"""A socket-level guard: any connection or name lookup beyond loopback is recorded and refused.

The same guards the gateway's processes get from tests/processguard (OCRFLUX_TEST_NETGUARD),
here switched on in the test process itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.processguard.sitecustomize import network_guards


@contextmanager
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Yields the list of attempted non-loopback destinations (each was refused)."""
    attempts: list[object] = []
    guards = network_guards(attempts.append)
    monkeypatch.setattr(socket.socket, "connect", guards["connect"])
    monkeypatch.setattr(socket.socket, "connect_ex", guards["connect_ex"])
    monkeypatch.setattr(socket, "getaddrinfo", guards["getaddrinfo"])
    try:
        yield attempts
    finally:
        monkeypatch.undo()
