"""Getting images and documents in: SSRF-guarded downloads of remote URLs.

The guard resolves the host itself, refuses any non-public address (unless allow-listed), and
then connects to the very address it checked (Host header + TLS SNI carry the name), so a DNS
answer that changes between check and connect (rebinding) cannot redirect the request.
Redirects are followed by hand, each hop checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import httpx

from ocrflux.intake.image_input import ImageRejected, format_mb, over_limit
from ocrflux.settings import Settings

T = TypeVar("T")
Resolver = Callable[[str], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str) -> list[str]:
    """All addresses the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def address_allowed(address: IPAddress, allowlist: Sequence[IPNetwork] = ()) -> bool:
    """True for a public address, or one inside an allow-listed network."""
    candidates = [address]
    inner = _embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    if any(a in net for a in candidates for net in allowlist if a.version == net.version):
        return True
    return all(_is_public(a) for a in candidates)


async def resolve_checked(
    host: str,
    resolve: Resolver,
    allowlist: Sequence[IPNetwork],
    unresolved: Callable[[str], Exception],
) -> IPAddress:
    """The address to connect to for `host` (a literal IP, or every answer of `resolve`, each
    of which must pass `check_address`); `unresolved(message)` is raised when none is found."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolve(host)
        except OSError:
            addresses = []
        if not addresses:
            raise unresolved(f"could not resolve host {host}") from None
    # Every answer must pass: the system would pick among them, so must we.
    checked = [check_address(a, allowlist) for a in addresses]
    return checked[0]


def check_address(ip: str, allowlist: Sequence[IPNetwork] = ()) -> IPAddress:
    """Parse and check one address; ImageRejected("address 10.0.0.5 is not allowed") if refused."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ImageRejected(f"address {ip} is not a valid IP address") from None
    if not address_allowed(address, allowlist):
        raise ImageRejected(f"address {address} is not allowed")
    return address


def _unsupported_scheme(scheme: str) -> ImageRejected:
    return ImageRejected(f"unsupported URL scheme {scheme!r} (only http and https)")


class _RedirectGuard(httpx.AsyncBaseTransport):
    """Refuses a redirect whose Location is not an http(s) URL, before httpx reads it.

    httpx works out where a redirect leads even when not following it, and raised a bare
    InvalidURL (a 500) on `data:` and `javascript:` Locations; an unparsable one came back
    as "could not download the image" instead of saying what was wrong.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        location = response.headers.get("location")
        if response.status_code in _REDIRECTS and location is not None:
            try:
                scheme = httpx.URL(location).scheme
            except httpx.InvalidURL:
                await response.aclose()
                raise ImageRejected("image URL redirected to an invalid URL") from None
            if scheme not in ("", "http", "https"):  # "": relative, to the same server
                await response.aclose()
                raise _unsupported_scheme(scheme)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class RemoteFetcher:
    """Downloads http(s) images: SSRF guard, pinned address, capped size and time."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._enabled = settings.remote_images
        self._allowlist = [
            ipaddress.ip_network(cidr, strict=False) for cidr in settings.remote_image_allowlist
        ]
        self._timeout = settings.remote_image_timeout
        self._max_redirects = settings.remote_image_max_redirects
        self._max_bytes = settings.max_image_bytes
        self._resolve = resolver or system_resolver
        # No reuse: a pooled TLS connection to an IP was verified for another host name.
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)
        inner = transport or httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        self._client = httpx.AsyncClient(
            transport=_RedirectGuard(inner),
            follow_redirects=False,
            trust_env=False,  # an HTTP(S)_PROXY would resolve names itself, past the guard
            timeout=httpx.Timeout(self._timeout),
            limits=limits,
            headers={
                "User-Agent": "ocrflux-gateway",
                "Accept": "image/*",
                "Accept-Encoding": "identity",  # the size cap counts what is on the wire
            },
        )

    async def fetch(self, url: str, *, max_bytes: int | None = None, what: str = "image") -> bytes:
        """The bytes behind `url` (an image, or `what`), or ImageRejected saying why not."""
        if not self._enabled:
            raise ImageRejected(f"remote {what} URLs are disabled")
        limit = max_bytes or self._max_bytes
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url, limit, what)
        except TimeoutError:
            raise ImageRejected(f"{what} download timed out after {self._timeout:g} s") from None

    async def _follow(self, url: str, limit: int, what: str) -> bytes:
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL:
            raise ImageRejected(f"{what} URL is not a valid URL") from None
        for _ in range(self._max_redirects + 1):
            address = await self._checked_address(current)
            host = current.host
            request = self._client.build_request(
                "GET",
                current.copy_with(host=str(address)),
                headers={
                    "Host": current.netloc.decode("ascii"),
                    "Accept": "image/*" if what == "image" else "*/*",
                },
                extensions={"sni_hostname": host} if current.scheme == "https" else None,
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise ImageRejected(
                    f"could not download the {what} from {host} ({type(exc).__name__})"
                ) from None
            try:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    current = current.join(location)
                    continue
                if response.status_code != 200:
                    raise ImageRejected(f"{what} URL answered HTTP {response.status_code}")
                return await self._read_capped(response, host, limit, what)
            finally:
                await response.aclose()
        raise ImageRejected(f"too many redirects (more than {self._max_redirects})")

    async def _checked_address(self, url: httpx.URL) -> IPAddress:
        if url.scheme not in ("http", "https"):
            raise _unsupported_scheme(url.scheme)
        host = url.host
        if not host:
            raise ImageRejected("image URL has no host")
        return await resolve_checked(host, self._resolve, self._allowlist, ImageRejected)

    async def _read_capped(
        self, response: httpx.Response, host: str, limit: int, what: str
    ) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ImageRejected(over_limit(what, int(declared), limit), 413)
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > limit:  # stop reading: never buffer past the cap
                    raise ImageRejected(
                        f"{what} is larger than the limit of {format_mb(limit)}", 413
                    )
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ImageRejected(
                f"could not download the {what} from {host} ({type(exc).__name__})"
            ) from None
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self._client.aclose()
