"""`python -m bench.documents`: a whole PDF end to end against a fake vLLM that models a GPU.

The fake answers every call after a fixed service time with at most `--capacity` calls in
service at once (the rest wait, like requests beyond a GPU's batch). The ideal wall time is
what that capacity allows: the pages in waves of `capacity`, then the merge-detect calls in
waves of `capacity` (the toolkit's stages run one after the other). The gateway's job is to
keep the fake full: its wall time is reported against the ideal (target: within 15%), with
the gateway's peak RSS (target: <= 300 MB) and its render workers' beside it.
"""

from __future__ import annotations

import argparse
import base64
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from tests.documents.pdfs import page_json, text_heavy_pdf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.documents", description=__doc__.splitlines()[0]
    )
    p.add_argument("--pages", type=int, default=100)
    p.add_argument("--service-time", type=float, default=1.0, help="fake seconds per call")
    p.add_argument("--capacity", type=int, default=16, help="calls the fake serves at once")
    p.add_argument("--in-flight", type=int, default=32, help="the gateway's PAGES_IN_FLIGHT")
    p.add_argument("--render-workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=2)
    return p.parse_args(argv)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (its render workers), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_mib(pid: int) -> tuple[float, float]:
    """(peak RSS of the process, peak RSS of its children together) in MiB."""
    peak = procs.memory_kib(pid)["VmHWM"] / 1024
    workers = sum(procs.memory_kib(child).get("VmHWM", 0) for child in children(pid))
    return peak, workers / 1024


def run_document(
    args: argparse.Namespace, fake: procs.FakeVLLMProcess, body: dict[str, Any], ideal: float
) -> list[tuple[int, float, float, float, float]]:
    """POST the document `args.runs` times through a fresh gateway; one row per run."""
    rows = []
    with tempfile.NamedTemporaryFile(prefix="bench-gateway-", suffix=".log") as log:
        gateway = procs.start_gateway(
            fake.port, log, pages_in_flight=args.in_flight, render_workers=args.render_workers
        )
        try:
            with httpx.Client(timeout=600) as client:
                for run in range(args.runs):
                    procs.reset_peak(gateway.proc.pid)
                    started = time.monotonic()
                    response = client.post(f"{gateway.url}/v1/ocr", json=body)
                    wall = time.monotonic() - started
                    response.raise_for_status()
                    result = response.json()
                    assert len(result["pages"]) == args.pages and not result["fallback_pages"]
                    peak, workers = rss_mib(gateway.proc.pid)
                    rows.append((run + 1, wall, wall / ideal, peak, workers))
        finally:
            gateway.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pdf = text_heavy_pdf(pages=args.pages)
    body = {
        "model": "bench",
        "document": {
            "type": "document_url",
            "document_url": "data:application/pdf;base64," + base64.b64encode(pdf).decode(),
        },
    }
    waves = math.ceil(args.pages / args.capacity) + math.ceil((args.pages - 1) / args.capacity)
    ideal = waves * args.service_time
    fake = procs.start_fake(args.service_time)
    try:
        fake.control(
            capacity=args.capacity,
            answer=page_json("# A page\n\nSome text that a page would hold."),
            prompt_answers=[{"contains": ["Previous page:"], "answers": ["[]"]}],
        )
        rows = run_document(args, fake, body, ideal)
    finally:
        fake.stop()
    print(
        f"\n{args.pages}-page PDF ({len(pdf) / 1024:.0f} KB) through /v1/ocr; fake vLLM "
        f"{args.service_time:g} s per call, capacity {args.capacity}; PAGES_IN_FLIGHT "
        f"{args.in_flight}, RENDER_WORKERS {args.render_workers}\n"
    )
    print(f"ideal: {waves} waves x {args.service_time:g} s = {ideal:.1f} s "
          f"(pages then merge detection, {args.capacity} calls at a time)\n")  # fmt: skip
    print("| run | wall s | wall / ideal | gateway peak RSS MB | render workers RSS MB |")
    print("|---:|---:|---:|---:|---:|")
    for run, wall, ratio, peak, workers in rows:
        print(f"| {run} | {wall:.1f} | {ratio:.3f} | {peak:.0f} | {workers:.0f} |")


if __name__ == "__main__":
    main()
