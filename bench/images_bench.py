"""Image preparation benchmark (issue 4). Not a test: prints Markdown tables.

    python -m bench.images_bench            # both parts
    python -m bench.images_bench --no-gateway

Part 1: median time of `prepare_inline` (one thread) for a 12 MP JPEG photo, a 1024-px PNG page
and a 4000x6000 PNG scan, with bytes in and out.
Part 2: p50/p99 of `GET /health` on a real gateway (`python -m ocrflux.api_server`, passthrough
mode, in front of a stub upstream started here) while 8 large images are normalised concurrently.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from PIL import Image, ImageDraw

from ocrflux.intake.images import ImageOptions, prepare_inline

MODEL = "ChatDOC/OCRFlux-3B"
LINE = "The quick brown fox jumps over the lazy dog 0123456789. " * 3


def _text_page(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(image)
    for y in range(40, size[1] - 40, max(12, size[1] // 120)):
        draw.text((40, y), LINE, fill="black")
    return image


def make_photo() -> bytes:
    """12 MP phone photo of a page: gradient light, sensor noise, text."""
    light = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    noise = Image.effect_noise((4000, 3000), 24).convert("RGB")
    photo = Image.blend(Image.blend(light, noise, 0.2), _text_page((4000, 3000)), 0.5)
    return _encode(photo, "JPEG", quality=90)


def make_page() -> bytes:
    return _encode(_text_page((791, 1024)), "PNG")


def make_scan() -> bytes:
    return _encode(_text_page((4000, 6000)), "PNG")


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def part1(runs: int) -> None:
    photo = make_photo()
    cases = [
        ("12 MP JPEG photo (4000x3000)", photo, "image/jpeg", ImageOptions()),
        ("same, IMAGE_FORMAT=jpeg", photo, "image/jpeg", ImageOptions(fmt="jpeg")),
        ("1024-px PNG page (791x1024)", make_page(), "image/png", ImageOptions()),
        ("PNG scan (4000x6000)", make_scan(), "image/png", ImageOptions()),
    ]
    print("| image | median ms | min ms | bytes in | bytes out | output | re-encoded |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for name, data, mime, opts in cases:
        url = data_url(data, mime)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            prepared = prepare_inline(url, opts)
            times.append((time.perf_counter() - started) * 1000)
        out = len(prepared.payload)
        print(
            f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {len(data):,} "
            f"| {out:,} | {prepared.width}x{prepared.height} {prepared.mime} "
            f"| {'yes' if prepared.reencoded else 'no'} |"
        )


# --- part 2: /health under image load --------------------------------------------------------


class StubUpstream(BaseHTTPRequestHandler):
    """The least vLLM that the gateway accepts."""

    protocol_version = "HTTP/1.1"
    images_seen = 0
    largest_side = 0

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json({})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image_url":
                    # Check what reached the upstream: a data URL at most IMAGE_MAX_SIDE wide.
                    b64 = part["image_url"]["url"].partition(";base64,")[2]
                    size = Image.open(io.BytesIO(base64.b64decode(b64))).size
                    StubUpstream.images_seen += 1
                    StubUpstream.largest_side = max(StubUpstream.largest_side, *size)
        self._json(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 1, "total_tokens": 1001},
            }
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(upstream_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "VLLM_"))}
    env.update(
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        VLLM_URL="http://127.0.0.1",
        VLLM_PORT=str(upstream_port),
        PROMPT_MODE="passthrough",
        HEALTH_CHECK_INTERVAL="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.api_server"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("gateway did not become healthy in 30 s")


async def sample_health(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get(f"{url}/health")
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        await asyncio.sleep(0.005)
    return latencies


def _quantiles(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"{statistics.median(values):.1f} | {p99:.1f} | {values[-1]:.1f} | {len(values)}"


async def measure(url: str, bodies: list[bytes], rounds: int) -> None:
    async with httpx.AsyncClient(timeout=120) as health, httpx.AsyncClient(timeout=300) as load:
        stop = asyncio.Event()
        idle_task = asyncio.create_task(sample_health(health, url, stop))
        await asyncio.sleep(2)
        stop.set()
        idle = await idle_task

        stop = asyncio.Event()
        busy_task = asyncio.create_task(sample_health(health, url, stop))
        started = time.perf_counter()
        for _ in range(rounds):
            responses = await asyncio.gather(
                *(
                    load.post(
                        f"{url}/v1/chat/completions",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    for body in bodies
                )
            )
            for response in responses:
                response.raise_for_status()
        elapsed = time.perf_counter() - started
        stop.set()
        busy = await busy_task
    print("| /health | p50 ms | p99 ms | max ms | samples |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| idle | {_quantiles(idle)} |")
    print(f"| 8 large images normalising ({rounds} rounds, {elapsed:.1f} s) | {_quantiles(busy)} |")


def part2(rounds: int) -> None:
    photo, scan = data_url(make_photo(), "image/jpeg"), data_url(make_scan(), "image/png")
    bodies = [
        json.dumps(
            {
                "model": MODEL,
                "max_tokens": 16,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Convert this page to Markdown."},
                            {"type": "image_url", "image_url": {"url": url}},
                        ],
                    }
                ],
            }
        ).encode()
        for url in [photo, scan] * 4
    ]
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), StubUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    gateway, url = start_gateway(upstream.server_address[1])
    try:
        asyncio.run(measure(url, bodies, rounds))
        print(
            f"\n(stub upstream received {StubUpstream.images_seen} images, "
            f"largest side {StubUpstream.largest_side} px)"
        )
    finally:
        gateway.terminate()
        gateway.wait(timeout=15)
        upstream.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per image (part 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 8 images (part 2)")
    parser.add_argument("--no-gateway", action="store_true", help="skip part 2")
    args = parser.parse_args()
    print(f"## Image normalisation (one thread, {args.runs} runs)\n")
    part1(args.runs)
    if not args.no_gateway:
        print("\n## GET /health while the gateway normalises 8 large images at a time\n")
        part2(args.rounds)


if __name__ == "__main__":
    main()
