"""Images end to end: client -> gateway (prepares) -> fake vLLM (reports what it received)."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support import FakeVLLMProcess, Process


def encoded(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, "white")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def request_with(*urls: str, **extra: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Read this page."}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "m", "messages": [{"role": "user", "content": parts}], **extra}


def post(gateway: Process, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)


def received_sizes(fake: FakeVLLMProcess) -> list[tuple[int, int]]:
    return [(i["width"], i["height"]) for r in fake.requests() for i in r["images"]]


def test_large_images_arrive_downscaled_small_ones_untouched(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    small = data_url(encoded((800, 600)))
    photo = data_url(encoded((4000, 3000), "JPEG"), "image/jpeg")
    scan = data_url(encoded((2000, 3000)))
    assert post(passthrough_gateway, request_with(small, photo, scan)).status_code == 200
    assert received_sizes(fake) == [(800, 600), (1024, 768), (683, 1024)]
    assert fake.requests()[0]["images"][0]["bytes"] == len(encoded((800, 600)))


def test_bare_base64_is_accepted_and_sent_as_a_data_url(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    bare = base64.b64encode(encoded((300, 200))).decode()
    assert post(passthrough_gateway, request_with(bare)).status_code == 200
    (image,) = fake.requests()[0]["images"]
    assert (image["kind"], image["mime"], image["width"]) == ("data", "image/png", 300)


def test_ocrflux_pages_are_normalised_before_the_page_prompt(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    fake.control(
        answer='{"primary_language": "en", "is_rotation_valid": true, '
        '"rotation_correction": 0, "is_table": false, "is_diagram": false, '
        '"natural_text": "Page text."}'
    )
    response = post(ocrflux_gateway, request_with(data_url(encoded((2000, 3000)))))
    assert response.json()["choices"][0]["message"]["content"] == "Page text."
    assert received_sizes(fake) == [(682, 1024)]  # the toolkit's int(): 682.67 -> 682


def test_metadata_is_stripped_before_anyone_parses_it(
    passthrough_gateway: Process, fake: FakeVLLMProcess
) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    plain = encoded((800, 600))
    inflates = zlib.compress(b"\x00" * (1 << 20), 9)  # 1 KB that Pillow inflates to 1 MB
    texts = b"".join(chunk(b"zTXt", b"k%d\x00\x00" % i + inflates) for i in range(64))
    with_text = plain[:33] + texts + plain[33:]
    assert post(passthrough_gateway, request_with(data_url(with_text))).status_code == 200
    (image,) = fake.requests()[0]["images"]
    assert (image["bytes"], image["width"], image["height"]) == (len(plain), 800, 600)


def bomb(width: int, height: int) -> bytes:
    """A real PNG header declaring width x height pixels (tiny on the wire)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("data:image/png;base64,@@@not-base64@@@", 400, "not valid base64"),
        (
            data_url(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml"),
            400,
            "unsupported image format: image/svg+xml",
        ),
        (
            data_url(bomb(20000, 5000)),
            413,
            "image is 20000x5000 pixels, the limit is 64,000,000 pixels",
        ),
        # Past twice the limit Pillow's own guard fires first; the message stays ours.
        (
            data_url(bomb(30000, 30000)),
            413,
            "image has 900,000,000 pixels, the limit is 64,000,000 pixels",
        ),
        (
            "file:///etc/passwd",
            400,
            "unsupported URL scheme 'file': send a data: URL, bare base64 or an http(s) URL",
        ),
        (
            "gopher://127.0.0.1:70/x",
            400,
            "unsupported URL scheme 'gopher': send a data: URL, bare base64 or an http(s) URL",
        ),
    ],
)
def test_refusals_name_the_part_and_say_why(
    passthrough_gateway: Process, fake: FakeVLLMProcess, url: str, status: int, words: str
) -> None:
    good = data_url(encoded((100, 100)))
    response = post(passthrough_gateway, request_with(good, url))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[2].image_url.url"
    assert words and words in error["message"]
    assert fake.requests() == []


@pytest.mark.parametrize("mode", ["passthrough", "ocrflux"])
def test_too_many_images(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess, mode: str
) -> None:
    gateway = make_gateway(prompt_mode=mode, max_images_per_request=2)
    url = data_url(encoded((50, 50)))
    response = post(gateway, request_with(url, url, url))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "3 images, the limit is 2" in error["message"]
    assert (error["code"], error["param"]) == ("too_many_images", "messages")
    assert fake.requests() == []


# Where /to/<name> redirects: URLs a download must never follow (hardening item 12).
LOCATIONS = {
    "data": "data:image/png;base64,iVBORw0KGgo=",
    "javascript": "javascript:alert(1)",
    "unparsable": "http://[::1",
}


@pytest.fixture
def image_server() -> Iterator[str]:
    """A loopback HTTP server: /page.png; /redirect -> 127.0.0.2; /to/<name> -> LOCATIONS[name]."""
    page = encoded((3000, 1500))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/page.png":
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            else:
                self.send_response(302)
                name = self.path.removeprefix("/to/")
                self.send_header("location", LOCATIONS.get(name, "http://127.0.0.2:9/secret.png"))
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_remote_loopback_url_is_refused_by_default(
    passthrough_gateway: Process, fake: FakeVLLMProcess, image_server: str
) -> None:
    response = post(passthrough_gateway, request_with(f"{image_server}/page.png"))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "address 127.0.0.1 is not allowed"
    assert fake.requests() == []


def test_allow_listed_remote_url_is_downloaded_and_each_redirect_checked(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess, image_server: str
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", remote_image_allowlist="127.0.0.1/32")
    assert post(gateway, request_with(f"{image_server}/page.png")).status_code == 200
    (image,) = fake.requests()[0]["images"]
    assert (image["kind"], image["width"], image["height"]) == ("data", 1024, 512)

    redirected = post(gateway, request_with(f"{image_server}/redirect"))
    assert redirected.status_code == 400
    assert redirected.json()["error"]["message"] == "address 127.0.0.2 is not allowed"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("data", "unsupported URL scheme 'data'"),
        ("javascript", "unsupported URL scheme 'javascript'"),
        ("unparsable", "redirected to an invalid URL"),
    ],
)
def test_a_redirect_to_a_url_that_is_not_http_is_a_400_and_the_gateway_carries_on(
    make_gateway: Callable[..., Process],
    fake: FakeVLLMProcess,
    image_server: str,
    name: str,
    says: str,
) -> None:
    # It used to be a 500 or a reset connection: the redirect target was resolved unchecked.
    gateway = make_gateway(prompt_mode="passthrough", remote_image_allowlist="127.0.0.1/32")
    redirected = post(gateway, request_with(f"{image_server}/to/{name}"))
    assert redirected.status_code == 400, redirected.text
    error = redirected.json()["error"]
    assert says in error["message"]
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert fake.requests() == []
    assert post(gateway, request_with(f"{image_server}/page.png")).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["DATA:image/png;base64", "data:image/png;BASE64", "data:image/png;charset=utf-8;base64"],
)
def test_odd_data_url_spellings_reach_vllm_in_the_one_spelling_it_reads(
    passthrough_gateway: Process, fake: FakeVLLMProcess, header: str
) -> None:
    # They used to be forwarded as sent when the image needed no work, and vLLM refused them.
    png = encoded((300, 200))
    payload = base64.b64encode(png).decode()
    response = post(passthrough_gateway, request_with(f"{header},{payload}"))
    assert response.status_code == 200, response.text
    (image,) = fake.requests()[0]["images"]
    assert (image["kind"], image["header"]) == ("data", "data:image/png;base64")
    assert (image["bytes"], image["width"], image["height"]) == (len(png), 300, 200)


def test_remote_images_can_be_turned_off(
    make_gateway: Callable[..., Process], image_server: str
) -> None:
    gateway = make_gateway(
        prompt_mode="passthrough", remote_images="false", remote_image_allowlist="127.0.0.1/32"
    )
    response = post(gateway, request_with(f"{image_server}/page.png"))
    assert response.status_code == 400
    assert "disabled" in response.json()["error"]["message"]


def test_token_budget_shrinks_images_or_refuses_with_numbers(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", max_model_len=2048, image_min_side=448)
    page = data_url(encoded((1024, 1024)))  # 1,369 visual tokens
    assert post(gateway, request_with(page, max_tokens=1000)).status_code == 200
    ((width, height),) = received_sizes(fake)
    assert width == height and 448 <= width < 1024
    refused = post(gateway, request_with(page, page, page, max_tokens=1800))
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "the images need ~" in message and "the model's context is 2,048" in message
    assert len(fake.requests()) == 1
