"""`python -m bench.deep_tiff`: a deep TIFF's late pages cost what its first pages do (issue 18).

A TIFF of `--frames` small frames (tests/documents/pdfs.py `deep_tiff`), opened once by a
`DocumentRenderer` with `--workers` workers; `--pages` pages are rendered from the start and
from the end of the document (all at once, as `/v1/ocr` asks with `PAGES_IN_FLIGHT` pages).
Before frames were found through a table (issue 18 item 9), frame k read k directories, so
the late pages' time grew with the document's depth. Prints a Markdown table: wall seconds
and the workers' CPU seconds per run, and the late/early ratio (target: about 1).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.render import cpu_seconds
from ocrflux.documents.render import DocumentRenderer
from tests.documents.pdfs import deep_tiff


async def run(frames: int, pages: int, workers: int) -> list[tuple[str, float, float]]:
    renderer = DocumentRenderer(workers=workers, max_side=1024)
    rows = []
    try:
        started = time.perf_counter()
        doc = await renderer.open(deep_tiff(frames, deflate=True))
        rows.append((f"open ({frames:,} frames)", time.perf_counter() - started, 0.0))
        # Warm-up: every worker started (the pool starts them as tasks queue), so each run's
        # CPU counts the same processes.
        await asyncio.gather(*(renderer.render(doc, i) for i in range(4 * workers)))
        for name, first in (("early", 0), ("late", frames - pages)):
            pids = renderer.worker_pids()
            started, cpu = time.perf_counter(), cpu_seconds(pids)
            await asyncio.gather(*(renderer.render(doc, i) for i in range(first, first + pages)))
            wall = time.perf_counter() - started
            rows.append((f"pages {first}-{first + pages - 1} ({name})", wall,
                         cpu_seconds(pids) - cpu))  # fmt: skip
        await renderer.close(doc)
    finally:
        await renderer.aclose()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deep_tiff", description=__doc__)
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.frames, args.pages, args.workers))
    print("| run | wall s | CPU s (parent + workers) |\n|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    early, late = rows[1], rows[2]
    print(
        f"\nlate / early: {late[1] / early[1]:.2f}x wall, {late[2] / max(early[2], 1e-9):.2f}x CPU"
    )


if __name__ == "__main__":
    main()
