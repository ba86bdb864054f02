"""The benchmark's request bodies: synthetic pages that compress like scans, and the workloads.

Images are generated, not shipped: a page of text lines plus seeded noise (a scan's grain is
what makes real pages 0.5-2 MB as PNG). The same seed gives the same bytes on every run.
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from PIL import Image, ImageChops, ImageDraw, ImageFont

from ocrflux.format.page import build_page_prompt

MODEL = "ChatDOC/OCRFlux-3B"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pages"

Mode = Literal["passthrough", "ocrflux"]
Client = Literal["wrk", "stream"]


def page_image(width: int, height: int, grain: int, seed: int = 6) -> Image.Image:
    """An RGB page: a title, paragraphs of text lines, a table grid, and `grain` levels of noise."""
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    scale = max(1, width // 800)
    font = ImageFont.load_default(size=14 * scale)
    title = ImageFont.load_default(size=28 * scale)
    rng = random.Random(seed)
    margin, y = width // 12, height // 14
    draw.text((margin, y), "Annual Report 2023", fill=0, font=title)
    y += 60 * scale
    words = [
        "the",
        "revenue",
        "grew",
        "by",
        "twelve",
        "percent",
        "driven",
        "by",
        "strong",
        "demand",
        "in",
        "asia",
    ]
    while y < height * 0.62:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(8, 14)))
        draw.text((margin, y), line, fill=rng.randint(0, 60), font=font)
        y += 22 * scale
    rows, cols, top = 6, 4, int(height * 0.66)
    cell_w, cell_h = (width - 2 * margin) // cols, 28 * scale
    for r in range(rows + 1):
        draw.line((margin, top + r * cell_h, width - margin, top + r * cell_h), fill=0)
    for c in range(cols + 1):
        draw.line((margin + c * cell_w, top, margin + c * cell_w, top + rows * cell_h), fill=0)
    if grain > 1:
        noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
        noise = noise.point(lambda v: v % grain)
        page = ImageChops.subtract(page, noise)
    return page.convert("RGB")


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_near(width: int, height: int, target_bytes: int) -> bytes:
    """A page PNG whose size is as close to `target_bytes` as the grain levels allow."""
    best: bytes | None = None
    for grain in (2, 3, 4, 6, 8, 12, 16, 24, 32, 40, 48, 56, 64, 96, 128):
        data = encode(page_image(width, height, grain), "PNG")
        if best is None or abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if len(data) >= target_bytes:
            break
    assert best is not None
    return best


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_message(url: str, text: str | None) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def chat_body(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": messages, **extra})


def page_answer() -> str:
    """A valid OCRFlux page answer (the hand-written English fixture)."""
    return orjson.loads((FIXTURES / "english_page.json").read_bytes())["answer"]


@dataclass
class Workload:
    """One row of the report: the same work sent direct and through a gateway in `mode`."""

    name: str
    description: str
    mode: Mode
    direct_body: bytes
    gateway_body: bytes
    fake: dict[str, Any] = field(default_factory=dict)  # /_control changes for this workload
    client: Client = "wrk"
    concurrency: int = 16

    @property
    def body_bytes(self) -> int:
        return len(self.gateway_body)


def build_workloads(
    stream_tokens: int, stream_concurrency: int, concurrency: int = 16
) -> list[Workload]:
    """(a) text, (b) 1024-px page passthrough and ocrflux, (c) streaming, (d) 12 MP JPEG."""
    prompt = build_page_prompt()
    text_messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    text = chat_body(text_messages, max_tokens=32)

    page_png = png_near(791, 1024, 600_000)  # 1024-px long side: no resize at IMAGE_MAX_SIDE=1024
    page_url = data_url("image/png", page_png)
    page_pass = chat_body(image_message(page_url, prompt), max_tokens=4096, temperature=0.0)
    # ocrflux mode: the client sends only the image; direct is what the gateway would send.
    page_ocr = chat_body(image_message(page_url, None))

    # The hot-path measurement: a ~282 KiB page request, one at a time.
    scan = encode(page_image(791, 1024, 8), "JPEG", quality=91)
    scan_body = chat_body(
        image_message(data_url("image/jpeg", scan), prompt), max_tokens=4096, temperature=0.0
    )

    photo = encode(page_image(4000, 3000, 8), "JPEG", quality=90)
    photo_body = chat_body(
        image_message(data_url("image/jpeg", photo), prompt), max_tokens=4096, temperature=0.0
    )

    # ~4 characters per token, one token per SSE chunk.
    answer = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 80)[: 4 * stream_tokens]
    stream = chat_body(text_messages, max_tokens=stream_tokens, stream=True)
    return [
        Workload(
            "a_text", "small text request", "passthrough", text, text, concurrency=concurrency
        ),
        Workload(
            "b_page_passthrough",
            f"791x1024 PNG page ({len(page_png) / 1e6:.2f} MB) as data URL, passthrough",
            "passthrough",
            page_pass,
            page_pass,
            concurrency=concurrency,
        ),
        Workload(
            "e_page_seq",
            f"791x1024 JPEG page ({len(scan) / 1e6:.2f} MB), passthrough, one request at a time",
            "passthrough",
            scan_body,
            scan_body,
            concurrency=1,
        ),
        Workload(
            "b_page_ocrflux",
            "the same page in ocrflux mode (gateway adds the prompt, decodes page JSON)",
            "ocrflux",
            page_pass,
            page_ocr,
            fake={"answer": page_answer()},
            concurrency=concurrency,
        ),
        Workload(
            "c_stream",
            f"streamed answer of {stream_tokens} chunks (~1 token each)",
            "passthrough",
            stream,
            stream,
            fake={"answer": answer, "stream_chunks": stream_tokens},
            client="stream",
            concurrency=stream_concurrency,
        ),
        Workload(
            "d_photo_12mp",
            f"4000x3000 JPEG ({len(photo) / 1e6:.2f} MB), gateway downscales to 1024",
            "passthrough",
            photo_body,
            photo_body,
            concurrency=concurrency,
        ),
    ]


def rss_body(target_bytes: int) -> bytes:
    """A page request of about `target_bytes` whose image needs no resizing (791x1024 PNG)."""
    png = png_near(791, 1024, target_bytes * 3 // 4)
    return chat_body(
        image_message(data_url("image/png", png), build_page_prompt()), max_tokens=4096
    )
