"""`python -m bench.image_turns`: a one-image request alone and beside a 40-image request.

Requests share the gateway's image thread pool (`IMAGE_WORKERS`). Each image here needs ~0.2 s
of pool work (a 3000x2000 PNG page decoded, resized to 1024 px and encoded), so a 40-image
request holds the pool for seconds; the one-image request is sent 0.5 s after it. With
`--baseline REV`, that commit's gateway runs beside this one in alternating rounds.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from bench import procs
from tests.support import ROOT


def page(label: str) -> str:
    """A 3000x2000 PNG page of text on a gradient (~140 KB) as a data URL."""
    image = Image.linear_gradient("L").resize((3000, 2000)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for y in range(0, 2000, 40):
        draw.text((50, y), f"{label} The quick brown fox jumps over the lazy dog " * 6, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def body(urls: list[str]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "read"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": parts}]}


def timed(url: str, payload: dict[str, Any]) -> float:
    start = time.perf_counter()
    response = httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=600)
    response.raise_for_status()
    return time.perf_counter() - start


def beside(url: str, small: dict[str, Any], big: dict[str, Any]) -> tuple[float, float]:
    """(the small request's seconds, the big one's), the small sent 0.5 s after the big."""
    seconds: list[float] = []
    thread = threading.Thread(target=lambda: seconds.append(timed(url, big)))
    thread.start()
    time.sleep(0.5)
    alone = timed(url, small)
    thread.join()
    return alone, seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.image_turns", description=__doc__)
    parser.add_argument("--baseline", help="a commit to run beside this checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    small, big = body([page("single")]), body([page("many")] * args.images)
    settings = {
        "prompt_mode": "passthrough",
        "image_workers": 2,
        "max_images_per_request": max(64, args.images),
        "max_model_len": 1_000_000,  # every page keeps its 1024 px: the pool does all the work
    }
    fake = procs.start_fake(0.0)
    rows: list[tuple[str, float, float, float]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(fake.stop)
        roots = {"this checkout": ROOT}
        if args.baseline:
            roots[args.baseline] = stack.enter_context(procs.checkout(args.baseline))
        gateways = {}
        for name, root in roots.items():
            log = stack.enter_context(tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".log"))
            gateway = procs.start_gateway(fake.port, log, root=Path(root), **settings)
            stack.callback(gateway.stop)
            timed(gateway.url, small)  # warm up
            gateways[name] = gateway
        for _ in range(args.rounds):
            for name, gateway in gateways.items():
                alone = statistics.median(timed(gateway.url, small) for _ in range(3))
                next_to, big_seconds = beside(gateway.url, small, big)
                rows.append((name, alone, next_to, big_seconds))
    print(f"\n1-image request alone and beside a {args.images}-image request (IMAGE_WORKERS 2)\n")
    print("| gateway | alone s | beside s | beside / alone | the big request s |")
    print("|---|---:|---:|---:|---:|")
    for name, alone, next_to, big_seconds in rows:
        print(
            f"| {name} | {alone:.2f} | {next_to:.2f} | {next_to / alone:.1f}x | {big_seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
