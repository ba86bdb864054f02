"""Loaded by every Python process that has this directory on PYTHONPATH (the gateway and the
worker processes it spawns): test-only guards, switched on by environment variables.

- OCRFLUX_TEST_NETGUARD=<file>: a connection or name lookup beyond loopback made through the
  standard library's sockets (what urllib, requests and model downloaders use) is refused and
  appended to <file>, one line each, whichever process tried. uvloop's own connections (the
  gateway's event loop) do not pass through here: tests watch those ports themselves.
- OCRFLUX_TEST_HIDE_MODULES=a,b: those modules cannot be imported or found, as if their
  distributions were not installed.
- OCRFLUX_TEST_CRASH_PAGES=<dir>: a local OCR worker that has just read a page saying
  CRASH ALWAYS exits on the spot, the page still in flight (as the OOM killer would end it);
  a page saying CRASH ONCE does so the first time only (a file in <dir> remembers it).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
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


_READER = "ocrflux.engines.local.reader"


def _crash_on_marked_pages(memory: str) -> Callable[[Any], None]:
    """What to do to `ocrflux.engines.local.reader` once imported: wrap its `read_page`."""

    def wrap(module: Any) -> None:
        read_page = module.read_page

        def crashing_read_page(*args: Any, **kwargs: Any) -> Any:
            page = read_page(*args, **kwargs)
            said = "".join(page.markdown.split()).upper()
            once = os.path.join(memory, "crashed-once")
            if "CRASHALWAYS" in said:
                os._exit(70)
            if "CRASHONCE" in said and not os.path.exists(once):
                open(once, "w").close()
                os._exit(70)
            return page

        module.read_page = crashing_read_page

    return wrap


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `then(module)` right after the module `name` is executed (in any process)."""

    def __init__(self, name: str, then: Callable[[Any], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader, then = spec.loader, self.then
        real_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            real_exec(module)
            then(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("OCRFLUX_TEST_CRASH_PAGES"):
    sys.meta_path.insert(
        0, _AfterImport(_READER, _crash_on_marked_pages(os.environ["OCRFLUX_TEST_CRASH_PAGES"]))
    )
if os.environ.get("OCRFLUX_TEST_NETGUARD"):
    _guard_network(os.environ["OCRFLUX_TEST_NETGUARD"])
for _name in filter(None, os.environ.get("OCRFLUX_TEST_HIDE_MODULES", "").split(",")):
    sys.modules[_name] = None  # type: ignore[assignment]  # find_spec: None; import: ImportError
