"""Loaded by every Python process that has this directory on PYTHONPATH (the gateway and the
worker processes it spawns): test-only guards, switched on by environment variables.

- OCRFLUX_TEST_NETGUARD=<file>: a connection or name lookup beyond loopback made through the
  standard library's sockets (what urllib, requests and model downloaders use) is refused and
  appended to <file>, one line each, whichever process tried. uvloop's own connections (the
  gateway's event loop) do not pass through here: tests watch those ports themselves.
- OCRFLUX_TEST_HIDE_MODULES=a,b: those modules cannot be imported or found, as if their
  distributions were not installed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from typing import Any


def _loopback(host: object) -> bool:
    if host in (None, "", "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def network_guards(record: Callable[[object], None]) -> dict[str, Any]:
    """Replacements for `socket.socket.connect`, `.connect_ex` and `socket.getaddrinfo` that
    pass loopback (and non-IP sockets) through and refuse the rest, `record`ing each attempt."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        return _loopback(address[0] if isinstance(address, tuple) else address)

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            record(address)
            raise OSError(f"network access attempted: {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            record(address)
            raise OSError(f"network access attempted: {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            record(host)
            raise socket.gaierror(f"name lookup attempted: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    return {"connect": connect, "connect_ex": connect_ex, "getaddrinfo": getaddrinfo}


def _guard_network(log: str) -> None:
    def record(what: object) -> None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {what!r}\n")

    guards = network_guards(record)
    socket.socket.connect = guards["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = guards["connect_ex"]  # type: ignore[method-assign]
    socket.getaddrinfo = guards["getaddrinfo"]


if os.environ.get("OCRFLUX_TEST_NETGUARD"):
    _guard_network(os.environ["OCRFLUX_TEST_NETGUARD"])
for _name in filter(None, os.environ.get("OCRFLUX_TEST_HIDE_MODULES", "").split(",")):
    sys.modules[_name] = None  # type: ignore[assignment]  # find_spec: None; import: ImportError
