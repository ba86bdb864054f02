"""Remote images: the SSRF guard, pinned connections, redirects, size and time caps, ImagePreparer.

Traffic only ever goes to a test server on 127.0.0.2. Test host names resolve through an
injected resolver; refused ones resolve to private/metadata addresses, and every request passes a
transport that raises unless it goes to 127.0.0.2, so a broken guard fails the test instead of
connecting anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import ipaddress
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from ocrflux.intake.fetch import RemoteFetcher, address_allowed, check_address
from ocrflux.intake.images import ImageRejected
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.settings import Settings

SERVER_IP = "127.0.0.2"


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "orange").save(buffer, "PNG")
    return buffer.getvalue()


PNG = png_bytes()


class Handler(BaseHTTPRequestHandler):
    seen_hosts: list[str] = []  # noqa: RUF012 (shared by design: the test reads it)

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Handler.seen_hosts.append(self.headers.get("Host", ""))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/img.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif url.path == "/redirect":
            self._send(302, b"", {"Location": query["to"][0]})
        elif url.path.startswith("/chain/"):
            left = int(url.path.rsplit("/", 1)[1])
            self._send(302, b"", {"Location": f"/chain/{left - 1}" if left else "/img.png"})
        elif url.path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:  # no Content-Length: only the reader can stop this (hard stop at 64 MB)
                for _ in range(1024):
                    self.wfile.write(PNG[:8] + b"\x00" * 65528)
            except OSError:
                pass
        elif url.path == "/declared-huge":
            self._send(200, PNG, {"Content-Length": str(500 * 1024 * 1024)}, length=False)
        elif url.path == "/slow":
            time.sleep(3)
            self._send(200, PNG, {})
        else:
            self._send(404, b"no", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str], length: bool = True) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer((SERVER_IP, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


HOSTS = {
    "img.test": ["127.0.0.2"],
    "loopback.test": ["127.0.0.1"],
    "evil.test": ["10.0.0.5"],
    "meta.test": ["169.254.169.254"],
    "v6.test": ["fd00::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "mixed.test": ["127.0.0.2", "10.0.0.5"],
}


async def resolver(host: str) -> list[str]:
    if host not in HOSTS:
        raise OSError(f"unknown test host {host}")
    return HOSTS[host]


class ServerOnly(httpx.AsyncHTTPTransport):
    """Real HTTP, but only to the test server: anything else is a guard failure."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != SERVER_IP:
            raise AssertionError(f"the guard let a request through to {request.url.host}")
        self.requests.append(request)
        return await super().handle_async_request(request)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "remote_image_allowlist": [f"{SERVER_IP}/32"],
        "remote_image_timeout": 5.0,
        "remote_image_max_redirects": 3,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def transport() -> ServerOnly:
    return ServerOnly()


@pytest.fixture
async def fetcher(transport: ServerOnly) -> Any:
    fetcher = RemoteFetcher(settings(), resolver=resolver, transport=transport)
    yield fetcher
    await fetcher.aclose()


# --- the address check (no packets at all) -----------------------------------------------------


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "127.0.0.2", "10.0.0.5", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "169.254.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fc00::1", "fd00::1", "fe80::1", "fe80::1%eth0", "ff02::1", "fec0::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:a00:5::1",  # 6to4 of 10.0.0.5
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "::a00:5",  # IPv4-compatible 10.0.0.5
])  # fmt: skip
def test_refused_addresses(ip: str) -> None:
    assert not address_allowed(ipaddress.ip_address(ip))
    with pytest.raises(ImageRejected, match=r"^address .* is not allowed$"):
        check_address(ip)


@pytest.mark.parametrize("ip", [
    "1.1.1.1", "8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2002:5db8:d822::1",
])  # fmt: skip
def test_public_addresses(ip: str) -> None:
    assert address_allowed(ipaddress.ip_address(ip))


def test_allowlist() -> None:
    allow = [ipaddress.ip_network("10.0.0.0/16")]
    assert address_allowed(ipaddress.ip_address("10.0.0.5"), allow)
    assert address_allowed(ipaddress.ip_address("::ffff:10.0.0.5"), allow)
    assert not address_allowed(ipaddress.ip_address("10.1.0.5"), allow)
    assert not address_allowed(ipaddress.ip_address("169.254.169.254"), allow)
    assert check_address("10.0.0.5", allow) == ipaddress.ip_address("10.0.0.5")


# --- fetching ----------------------------------------------------------------------------------


async def test_fetch_connects_to_the_checked_address_with_the_host_name(
    fetcher: RemoteFetcher, transport: ServerOnly, port: int
) -> None:
    Handler.seen_hosts.clear()
    assert await fetcher.fetch(f"http://img.test:{port}/img.png") == PNG
    assert [r.url.host for r in transport.requests] == [SERVER_IP]
    assert Handler.seen_hosts == [f"img.test:{port}"]


async def test_redirect_chain_within_the_allowed_server(
    fetcher: RemoteFetcher, transport: ServerOnly, port: int
) -> None:
    assert await fetcher.fetch(f"http://img.test:{port}/chain/2") == PNG
    assert len(transport.requests) == 4


async def test_too_many_redirects(fetcher: RemoteFetcher, port: int) -> None:
    with pytest.raises(ImageRejected, match=r"too many redirects \(more than 3\)"):
        await fetcher.fetch(f"http://img.test:{port}/chain/5")


@pytest.mark.parametrize(("target", "message"), [
    ("http://127.0.0.1:{port}/img.png", "address 127.0.0.1 is not allowed"),
    ("http://loopback.test:{port}/img.png", "address 127.0.0.1 is not allowed"),
    ("http://meta.test/latest/meta-data/", "address 169.254.169.254 is not allowed"),
    ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed"),
    ("http://evil.test/", "address 10.0.0.5 is not allowed"),
    ("http://[fd00::1]/", "address fd00::1 is not allowed"),
    ("http://mapped.test/", "address ::ffff:a00:1 is not allowed"),
    ("file:///etc/passwd", "unsupported URL scheme 'file' (only http and https)"),
    ("gopher://img.test/", "unsupported URL scheme 'gopher' (only http and https)"),
    ("data:image/png;base64,iVBORw0KGgo=", "unsupported URL scheme 'data' (only http and https)"),
    ("javascript:alert(1)", "unsupported URL scheme 'javascript' (only http and https)"),
    ("http://[::1", "image URL redirected to an invalid URL"),
    ("http://[zz]/a.png", "image URL redirected to an invalid URL"),
])  # fmt: skip
async def test_every_redirect_hop_is_checked(
    fetcher: RemoteFetcher, transport: ServerOnly, port: int, target: str, message: str
) -> None:
    location = target.format(port=port)
    with pytest.raises(ImageRejected) as caught:
        await fetcher.fetch(f"http://img.test:{port}/redirect?to={location}")
    assert caught.value.message == message
    assert len(transport.requests) == 1  # only the first hop, to the allowed server


@pytest.mark.parametrize(("url", "message"), [
    ("http://evil.test/a.png", "address 10.0.0.5 is not allowed"),
    ("http://v6.test/a.png", "address fd00::1 is not allowed"),
    ("http://mixed.test/a.png", "address 10.0.0.5 is not allowed"),
    ("http://10.0.0.5/a.png", "address 10.0.0.5 is not allowed"),
    ("http://localhost.invalid/a.png", "could not resolve host localhost.invalid"),
    ("ftp://img.test/a.png", "unsupported URL scheme 'ftp'"),
])  # fmt: skip
async def test_refused_first_hops(
    fetcher: RemoteFetcher, transport: ServerOnly, url: str, message: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        await fetcher.fetch(url)
    assert caught.value.message.startswith(message)
    assert transport.requests == []


async def test_default_resolver_refuses_localhost(transport: ServerOnly) -> None:
    fetcher = RemoteFetcher(settings(remote_image_allowlist=[]), transport=transport)
    try:
        with pytest.raises(ImageRejected, match=r"^address (127\.0\.0\.1|::1) is not allowed$"):
            await fetcher.fetch("http://localhost/a.png")
    finally:
        await fetcher.aclose()
    assert transport.requests == []


async def test_stops_reading_past_the_size_cap(transport: ServerOnly, port: int) -> None:
    fetcher = RemoteFetcher(
        settings(max_image_bytes=256 * 1024), resolver=resolver, transport=transport
    )
    try:
        with pytest.raises(ImageRejected) as caught:
            await fetcher.fetch(f"http://img.test:{port}/endless")
        # Had it kept reading, the 64 MB stream would end in a timeout or a different error.
        assert caught.value.message == "image is larger than the limit of 256 KB"
        assert caught.value.status == 413
        with pytest.raises(ImageRejected, match=r"^image is 500 MB, the limit is 256 KB$"):
            await fetcher.fetch(f"http://img.test:{port}/declared-huge")
    finally:
        await fetcher.aclose()


async def test_time_limit(transport: ServerOnly, port: int) -> None:
    fetcher = RemoteFetcher(
        settings(remote_image_timeout=0.3), resolver=resolver, transport=transport
    )
    started = time.monotonic()
    try:
        with pytest.raises(ImageRejected, match=r"timed out after 0.3 s|ReadTimeout"):
            await fetcher.fetch(f"http://img.test:{port}/slow")
    finally:
        await fetcher.aclose()
    assert time.monotonic() - started < 2


async def test_http_errors_and_disabled_fetching(
    fetcher: RemoteFetcher, transport: ServerOnly, port: int
) -> None:
    with pytest.raises(ImageRejected, match=r"^image URL answered HTTP 404$"):
        await fetcher.fetch(f"http://img.test:{port}/missing.png")
    off = RemoteFetcher(settings(remote_images=False), resolver=resolver, transport=transport)
    try:
        with pytest.raises(ImageRejected, match=r"^remote image URLs are disabled$"):
            await off.fetch(f"http://img.test:{port}/img.png")
    finally:
        await off.aclose()
    assert len(transport.requests) == 1


async def test_https_is_pinned_with_sni() -> None:
    """No network: a mock transport records what would be sent for a public host."""
    sent: list[httpx.Request] = []

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield PNG

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, stream=Body())

    async def public(host: str) -> list[str]:
        return ["93.184.216.34"]

    fetcher = RemoteFetcher(settings(), resolver=public, transport=httpx.MockTransport(answer))
    try:
        assert await fetcher.fetch("https://images.example.com/page.png") == PNG
    finally:
        await fetcher.aclose()
    (request,) = sent
    assert request.url.host == "93.184.216.34"
    assert request.url.scheme == "https"
    assert request.headers["host"] == "images.example.com"
    assert request.extensions["sni_hostname"] == "images.example.com"


# --- the async facade --------------------------------------------------------------------------


async def test_image_preparer_every_source(transport: ServerOnly, port: int) -> None:
    # Passthrough sizing (downscale only): the 64x48 test image is forwarded as it is.
    preparer = ImagePreparer(
        settings(image_workers=2, prompt_mode="passthrough"), resolver=resolver, transport=transport
    )
    try:
        url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        inline = await preparer.prepare(url)
        assert inline.data_url is url and not inline.reencoded
        bare = await preparer.prepare(base64.b64encode(PNG).decode())
        assert bare.data_url == url
        remote = await preparer.prepare(f"http://img.test:{port}/img.png")
        assert remote.data_url == url and (remote.width, remote.height) == (64, 48)
        with pytest.raises(ImageRejected, match=r"address 10\.0\.0\.5 is not allowed"):
            await preparer.prepare("http://evil.test/x.png")
        turned = await preparer.rotate(remote, 270)
        assert (turned.width, turned.height) == (48, 64)
        assert await preparer.rotate(remote, 360) is remote
        big = await preparer.prepare(
            "data:image/png;base64," + base64.b64encode(png_bytes((1024, 1024))).decode()
        )
        fitted = await preparer.fit([big, remote], 100, 256)
        assert fitted == [big, remote]
        (shrunk, same) = await preparer.fit([big, remote], 100, 7300)
        assert same is remote and 448 <= shrunk.width < 1024
    finally:
        await preparer.aclose()


def _loop_and_worker_nice(extra: int) -> tuple[int, int]:
    """In a fresh thread niced `extra` levels below this one (a gateway started under `nice`),
    an event loop with an ImagePreparer: (the loop thread's nice, an image worker's nice)."""
    result: list[tuple[int, int]] = []

    def gateway_thread() -> None:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + extra))

        async def main() -> tuple[int, int]:
            preparer = ImagePreparer(settings())
            try:
                worker = await preparer._run(
                    lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                )
            finally:
                await preparer.aclose()
            return os.getpriority(os.PRIO_PROCESS, me), worker

        result.append(asyncio.run(main()))

    thread = threading.Thread(target=gateway_thread)
    thread.start()
    thread.join(30)
    (niceness,) = result
    return niceness


@pytest.mark.parametrize("extra", [0, 5, 10], ids=["plain", "nice-5", "nice-10"])
def test_image_workers_run_below_the_event_loop_priority(extra: int) -> None:
    # Ten levels below the loop's thread whatever it started at (capped at 19, the lowest):
    # `nice -n 10 python -m pytest` used to leave the workers at the loop's own 10.
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    loop, worker = _loop_and_worker_nice(extra)
    assert loop == min(19, base + extra)
    assert worker == min(19, loop + 10)
    if loop < 19:
        assert worker > loop


@pytest.mark.parametrize(
    ("mode", "fine"),
    [("passthrough", (640, 480)), ("ocrflux", (768, 1024))],  # ocrflux: a page at 1024 already
)
async def test_an_image_that_needs_no_change_skips_the_thread_pool(
    mode: str, fine: tuple[int, int]
) -> None:
    preparer = ImagePreparer(settings(prompt_mode=mode))

    class NoThreads(concurrent.futures.Executor):
        def submit(self, *args: object, **kwargs: object) -> concurrent.futures.Future[object]:
            raise AssertionError("the thread pool was used")

    pool, preparer._pool = preparer._pool, NoThreads()
    try:
        url = "data:image/png;base64," + base64.b64encode(png_bytes(fine)).decode()
        prepared = await preparer.prepare(url)
        assert prepared.data_url is url
        with pytest.raises(AssertionError, match="thread pool"):  # a big one still goes there
            await preparer.prepare(
                "data:image/png;base64," + base64.b64encode(png_bytes((3000, 2000))).decode()
            )
    finally:
        preparer._pool = pool
        await preparer.aclose()
