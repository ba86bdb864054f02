"""`python -m bench.render`: how fast documents become page images (issue 11). Prints Markdown.

Pages are rendered at `--max-side` (1024, the toolkit's size) from PDFs made on the spot by
tests/documents/pdfs.py: a text-heavy 20-page report (vector text, 9 pt, a table per page)
and a 20-page scan (one 200-dpi JPEG per page). Rows:

- worker task, in-process: `documents.render.render_page`, everything one page costs a worker
  (pdfium render, PNG, base64) on one core, without the pool's messages; passes through
  every page after a warm-up pass;
- PNG alone: `documents.png` against Pillow's encoder (compress_level 1) on the same pages;
- the pool: `DocumentRenderer` with 1 and 2 workers, all pages requested at once, after a
  warm-up pass (worker start-up and opening the document are not counted; they are shown).

Per-core rates come from CPU time (the workers' and the gateway process's), so they hold on a
machine shared with other work; wall-clock rates are shown beside them.
Target (issue 11): >= 50 pages/s per core at 1024 px, PNG encoding included.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pypdfium2 as pdfium
from PIL import Image

from ocrflux.documents.png import encode_png
from ocrflux.documents.raster import render_page
from ocrflux.documents.render import DocumentRenderer
from ocrflux.intake.images import PreparedImage
from tests.documents.pdfs import scanned_pdf, text_heavy_pdf

TARGET = 50.0
MAX_PIXELS = 64_000_000
CPU_BUDGET = 60.0  # seconds per page, far above any page here


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median CPU milliseconds of this process per call (pdfium and the encoders use one thread)."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of this process and of `pids` (from /proc)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def in_process(data: bytes, max_side: int, rounds: int) -> tuple[float, float, list[Image.Image]]:
    """(CPU ms per page over `rounds` passes through every page, mean PNG KB, the pages)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as file:
        file.write(data)
        file.flush()
        count = len(pdfium.PdfDocument(data))
        sizes = []
        pages = []
        for page in range(count):  # the warm-up pass
            url, *_ = render_page(file.name, "pdf", page, max_side, MAX_PIXELS, CPU_BUDGET)
            png = PreparedImage(url, 0, 0, "image/png", True).payload
            sizes.append(len(png) / 1024)
            pages.append(Image.open(io.BytesIO(png)).convert("RGB"))
        started = time.process_time()
        for _ in range(rounds):
            for page in range(count):
                render_page(file.name, "pdf", page, max_side, MAX_PIXELS, CPU_BUDGET)
        ms = (time.process_time() - started) * 1000 / (rounds * count)
    return ms, statistics.mean(sizes), pages


def png_rows(pages: list[Image.Image], runs: int) -> tuple[float, float, float, float]:
    """(documents.png ms, KB, Pillow ms, KB), medians over the pages."""
    ours, ours_kb, pillow, pillow_kb = [], [], [], []
    for page in pages:
        raw = page.tobytes()

        def fast(raw: bytes = raw, page: Image.Image = page) -> bytes:
            return encode_png(raw, page.width, page.height, page.width * 3, "RGB")

        def slow(page: Image.Image = page) -> bytes:
            buffer = io.BytesIO()
            page.save(buffer, "PNG", compress_level=1)
            return buffer.getvalue()

        ours.append(median_ms(fast, runs))
        ours_kb.append(len(fast()) / 1024)
        pillow.append(median_ms(slow, runs))
        pillow_kb.append(len(slow()) / 1024)
    med = statistics.median
    return med(ours), med(ours_kb), med(pillow), med(pillow_kb)


async def pool(data: bytes, workers: int, max_side: int, rounds: int) -> tuple[float, float, float]:
    """(wall ms/page, CPU ms/page, seconds to start the pool and open the document)."""
    renderer = DocumentRenderer(workers=workers, max_side=max_side)
    try:
        started = time.perf_counter()
        doc = await renderer.open(data)
        opened = time.perf_counter() - started
        for _ in range(workers):  # warm-up: every worker opens the document
            await asyncio.gather(*(renderer.render(doc, i) for i in range(doc.num_pages)))
        pids = renderer.worker_pids()
        started, cpu = time.perf_counter(), cpu_seconds(pids)
        for _ in range(rounds):
            await asyncio.gather(*(renderer.render(doc, i) for i in range(doc.num_pages)))
        pages = rounds * doc.num_pages
        wall = (time.perf_counter() - started) * 1000 / pages
        return wall, (cpu_seconds(pids) - cpu) * 1000 / pages, opened
    finally:
        await renderer.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5, help="PNG timings per page (median)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes through the pages")
    args = parser.parse_args(argv)

    documents = {
        f"text-heavy {args.pages}-page PDF": text_heavy_pdf(args.pages),
        f"scanned {args.pages}-page PDF (200-dpi JPEG pages)": scanned_pdf(args.pages),
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Rendering at {args.max_side} px on {os.cpu_count()} cores (load average {load}); "
          f"target >= {TARGET:.0f} pages/s per core, PNG included.\n")  # fmt: skip
    print("| document | measure | CPU ms/page | pages/s per core | wall ms/page | PNG KB/page |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, data in documents.items():
        ms, kb, pages = in_process(data, args.max_side, args.rounds)
        print(f"| {name} | worker task in-process (render + PNG + base64) | {ms:.1f} "
              f"| **{1000 / ms:.0f}** | | {kb:.0f} |")  # fmt: skip
        ours, ours_kb, pillow, pillow_kb = png_rows(pages, args.runs)
        print(f"| {name} | PNG alone: documents.png | {ours:.1f} | | | {ours_kb:.0f} |")
        print(f"| {name} | PNG alone: Pillow, compress_level 1 | {pillow:.1f} | | "
              f"| {pillow_kb:.0f} |")  # fmt: skip
        for workers in (1, 2):
            wall, cpu, opened = asyncio.run(pool(data, workers, args.max_side, args.rounds))
            print(f"| {name} | pool, {workers} worker{'s' if workers > 1 else ''}, incl. the "
                  f"gateway's side (start + open {opened:.2f} s, not counted) | {cpu:.1f} "
                  f"| {1000 / cpu:.0f} | {wall:.1f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
