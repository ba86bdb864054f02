"""The embedded CPU OCR engine (issue 12): throughput per pool shape, memory, accuracy.

    python -m bench.local_ocr                      # 1x1, 1x2 and 2x1 (workers x threads)
    python -m bench.local_ocr --configs 2x1 --pages 24

Each configuration starts a `LocalOCRPool` (spawned workers load their models before timing),
reads the test pages once untimed, then reads `--pages` pages (the test pages in turn) all
submitted at once, and reports pages/s, the mean time a page spent in a worker, the workers'
CPU time per page (utime + stime) and the peak RSS of the worker processes (VmHWM). Accuracy
is scored on the first configuration's readings, the way the tests score it. Prints Markdown
tables; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ocrflux.engines.local.pool import LocalOCRPool
from ocrflux.engines.local.result import LocalPage
from tests.engines.local.pages import Page, accuracy, chinese_form, english_form, noisy, two_columns

FLOORS = {
    "english_form": 0.98,
    "two_columns": 0.98,
    "chinese_form": 0.95,
    "english_form_noisy": 0.90,
}


@dataclass
class Run:
    workers: int
    threads: int
    pages: int
    seconds: float
    page_seconds: list[float]
    worker_peak_mb: list[float]
    worker_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.pages / self.seconds


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_pids() -> list[int]:
    """This process's spawned pool workers (not multiprocessing's resource tracker)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


async def run(
    workers: int, threads: int, pages: list[Page], count: int
) -> tuple[Run, list[LocalPage]]:
    pool = LocalOCRPool(workers, threads)
    try:
        await pool.start()
        data = [p.encoded() for p in pages]
        first = await asyncio.gather(*(pool.read(d) for d in data))  # untimed: warm caches
        pids = worker_pids()
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        timed = await asyncio.gather(*(pool.read(data[k % len(data)]) for k in range(count)))
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
        peaks = [_kib(pid, "VmHWM") / 1024 for pid in pids]
    finally:
        await pool.aclose()
    page_seconds = [p.seconds for p in timed]
    return Run(workers, threads, count, seconds, page_seconds, peaks, cpu), list(first)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.local_ocr", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--configs", default="1x1,1x2,2x1", help="workers x threads, comma-separated"
    )
    parser.add_argument("--pages", type=int, default=12, help="pages read per timed run")
    args = parser.parse_args(argv)
    pages = [english_form(), chinese_form(), two_columns(), noisy(english_form())]
    runs: list[Run] = []
    scored: list[LocalPage] = []
    for config in args.configs.split(","):
        workers, threads = (int(v) for v in config.strip().split("x"))
        print(f"{workers} worker(s) x {threads} thread(s) ...", flush=True)
        result, readings = asyncio.run(run(workers, threads, pages, args.pages))
        runs.append(result)
        scored = scored or readings

    print(
        "\n| workers x threads | pages | seconds | pages/s | mean s in a worker"
        " | worker CPU s/page | peak RSS per worker (MB) | workers' peak RSS total (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(
            f"| {r.workers} x {r.threads} | {r.pages} | {r.seconds:.1f} | {r.rate:.2f} | "
            f"{statistics.fmean(r.page_seconds):.2f} | {r.worker_cpu_seconds / r.pages:.2f} | "
            f"{max(r.worker_peak_mb, default=0):.0f} | "
            f"{sum(r.worker_peak_mb):.0f} |"
        )
    print("\n| page | character accuracy | floor in the tests |")
    print("|---|---:|---:|")
    for page, reading in zip(pages, scored, strict=True):
        score = accuracy(page.text, reading.markdown, cjk=page.language == "zh")
        print(f"| {page.name} | {score:.4f} | {FLOORS[page.name]:.2f} |")
    print(
        f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; pages are"
        " 1000x1300 (the noisy one rotated 2 degrees, blurred, JPEG 40). On a shared machine"
        " compare CPU s/page: it barely moves with other load, pages/s does."
    )


if __name__ == "__main__":
    main()
