"""`python -m bench.batch`: batches of single-page `/v1/ocr` lines against capacity-bound fakes.

Each fake vLLM serves at most `--capacity` answers at once for `--service-time` seconds, so a
batch of N lines on G gateways (each with its own replica) cannot finish before
ceil(N / (G x capacity)) x service-time: the *ideal*. Measured per run: wall time from
`POST /v1/batches` to `completed` against that ideal, the gateways' CPU per line (their
processes and workers), the database's share (PostgreSQL: its server processes; SQLite, which
runs inside the gateway: the store's own calls for as many lines, timed alone), and the
gateways' peak RSS. Runs: SQLite with 1,000 and 10,000 lines (memory must stay flat), two
gateways on one PostgreSQL (the ideal halves), and a gateway SIGKILLed mid-batch and restarted
(resume time). Loopback only; prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from PIL import Image

from bench import procs
from ocrflux.jobs.records import BatchRecord, LineResult, LineSpec
from ocrflux.jobs.store import Catalog, WorkQueue, connect, database_url
from tests.documents.pdfs import page_json
from tests.postgres import create_database, postgres_server

OCR = "/v1/ocr"
WALL_TARGET = 1.10  # within 10% of the capacity-bound ideal
RSS_TARGET_MB = 300.0


@dataclass
class Run:
    name: str
    lines: int
    gateways: int
    wall_s: float
    ideal_s: float
    gateway_cpu_s: float
    database_cpu_s: float
    database_kind: str
    peak_rss_mb: float  # the largest gateway process (not its workers)
    workers_rss_mb: float  # its worker processes' peaks, summed
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.splitlines()[0])
    p.add_argument("--lines", default="1000,10000", help="SQLite runs: lines per batch")
    p.add_argument("--fleet-lines", type=int, default=10_000, help="PostgreSQL, 2 gateways")
    p.add_argument("--resume-lines", type=int, default=2_000, help="SIGKILL and restart")
    p.add_argument("--capacity", type=int, default=8, help="answers in service per replica")
    p.add_argument("--service-time", type=float, default=0.4, help="seconds per answer")
    p.add_argument("--lease", type=float, default=5.0, help="BATCH_LEASE_SECONDS")
    p.add_argument("--skip", default="", help="comma list of: sqlite,fleet,resume")
    return p.parse_args(argv)


def page_png() -> bytes:
    """A page at the size the gateway sends (longest side 1024): no resizing to charge."""
    out = io.BytesIO()
    Image.new("RGB", (768, 1024), "white").save(out, "PNG")
    return out.getvalue()


def input_file(path: Path, lines: int) -> None:
    """`lines` single-page `/v1/ocr` requests, written line by line (never whole in memory)."""
    url = "data:image/png;base64," + base64.b64encode(page_png()).decode()
    with path.open("wb") as out:
        for n in range(lines):
            body = {"model": "ocr", "document": {"type": "image_url", "image_url": url}}
            line = {"custom_id": f"line-{n}", "method": "POST", "url": OCR, "body": body}
            out.write(orjson.dumps(line) + b"\n")


def submit(base: str, path: Path) -> str:
    with path.open("rb") as f:
        upload = httpx.post(
            f"{base}/v1/files",
            files={"file": ("input.jsonl", f, "application/jsonl")},
            data={"purpose": "batch"},
            timeout=600,
        )
    upload.raise_for_status()
    created = httpx.post(
        f"{base}/v1/batches",
        json={"input_file_id": upload.json()["id"], "endpoint": OCR, "completion_window": "24h"},
        timeout=60,
    )
    created.raise_for_status()
    return str(created.json()["id"])


def batch(base: str, batch_id: str) -> dict[str, object]:
    answer = httpx.get(f"{base}/v1/batches/{batch_id}", timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def completed(batch_row: dict[str, object]) -> int:
    counts = batch_row["request_counts"]
    assert isinstance(counts, dict)
    return int(counts["completed"]) + int(counts["failed"])


def wait_done(base: str, batch_id: str, timeout: float = 3600) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        current = batch(base, batch_id)
        if current["status"] in ("completed", "failed", "expired", "cancelled"):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} not done in {timeout} s: {current}")
        time.sleep(0.2)


def check_output(base: str, done: dict[str, object], lines: int) -> None:
    """Every custom_id exactly once, every line answered 200: else the figures mean nothing."""
    if done["status"] != "completed" or done.get("error_file_id"):
        raise RuntimeError(f"batch did not complete cleanly: {done}")
    content = httpx.get(f"{base}/v1/files/{done['output_file_id']}/content", timeout=600)
    ids = [orjson.loads(line)["custom_id"] for line in content.content.splitlines()]
    if len(ids) != lines or len(set(ids)) != lines:
        raise RuntimeError(f"output has {len(ids)} lines, {len(set(ids))} distinct, of {lines}")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(f) for f in fields[11:15]) / procs.CLOCK_TICKS
    return total


def peaks(pid: int) -> tuple[float, float]:
    """VmHWM of the process and the sum over its descendants, in MB."""
    own = procs.memory_kib(pid).get("VmHWM", 0) / 1024
    workers = 0.0
    for child in descendants(pid):
        with contextlib.suppress(OSError, FileNotFoundError):
            workers += procs.memory_kib(child).get("VmHWM", 0) / 1024
    return own, workers


def postmaster(port: int) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"postgres") and f"-p {port}".encode() in b" ".join(argv):
                return int(cmdline.parent.name)
    raise RuntimeError(f"no postmaster on port {port}")


def ideal(lines: int, gateways: int, args: argparse.Namespace) -> float:
    return math.ceil(lines / (gateways * args.capacity)) * args.service_time


@contextlib.contextmanager
def fleet(
    args: argparse.Namespace, count: int, work: Path, database: str = ""
) -> Iterator[list[procs.Process]]:
    """`count` gateways, each with its own capacity-bound fake, sharing DATA_DIR (and the
    database when `database` names one)."""
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        gateways = []
        for n in range(count):
            fake = procs.start_fake_vllm(service_time=args.service_time, capacity=args.capacity)
            stack.callback(fake.stop)
            fake.control(record=False, answer=page_json("# Page\n\nText."))
            log = stack.enter_context((work / f"gateway-{n}.log").open("ab"))
            gateway = procs.start_gateway(
                fake.port,
                log,
                data_dir=str(work / "data"),
                jobs_database_url=database,
                batch_poll_interval=0.2,
                batch_lease_seconds=args.lease,
                batch_lines_in_flight=args.capacity + 8,
                max_concurrent_requests=args.capacity + 8,
            )
            stack.callback(gateway.stop)
            gateways.append(gateway)
        yield gateways


def measure(
    name: str, gateways: list[procs.Process], path: Path, lines: int, args: argparse.Namespace
) -> tuple[Run, dict[str, object]]:
    for g in gateways:
        procs.reset_peak(g.proc.pid)
    cpu_before = sum(tree_cpu(g.proc.pid) for g in gateways)
    base = gateways[0].url
    started = time.monotonic()
    batch_id = submit(base, path)
    done = wait_done(base, batch_id)
    wall = time.monotonic() - started
    cpu = sum(tree_cpu(g.proc.pid) for g in gateways) - cpu_before
    check_output(base, done, lines)
    rss = [peaks(g.proc.pid) for g in gateways]
    run = Run(
        name, lines, len(gateways), wall, ideal(lines, len(gateways), args), cpu, 0.0, "",
        max(r[0] for r in rss), max(r[1] for r in rss),
    )  # fmt: skip
    return run, done


async def store_alone(url: str, lines: int) -> float:
    """CPU seconds the store's own calls take for a batch of `lines` lines, in this process:
    insert, claim in turns of 24, commit each, read back for the output (SQLite's share)."""
    engine = await connect(url)
    try:
        now = int(time.time())
        record = BatchRecord(
            id="bench", owner="bench", api="openai", endpoint=OCR, input_files=["f"],
            completion_window="24h", created_at=now, expires_at=now + 86_400,
        )  # fmt: skip
        await Catalog(engine).add_batch(record)
        queue = WorkQueue(engine, "bench")
        started = time.process_time()
        await queue.claim_validation(60)
        specs = [LineSpec(n, f"line-{n}", 0, n * 100, 99) for n in range(lines)]
        for at in range(0, lines, 1000):
            await queue.add_lines("bench", specs[at : at + 1000])
        await queue.validated("bench", lines, 60)
        answer = LineResult(200, b'{"pages": []}' * 20, "rid", 100, 50)
        running = await queue.running_batches()
        while claimed := await queue.claim_lines(running[0], ["f"], 24, 60):
            for line in claimed:
                await queue.commit(line, answer)
        async for _ in queue.finished_lines("bench"):
            pass
        return time.process_time() - started
    finally:
        await engine.dispose()


def sqlite_runs(args: argparse.Namespace, work: Path) -> list[Run]:
    runs = []
    for lines in (int(n) for n in args.lines.split(",")):
        path = work / f"input-{lines}.jsonl"
        input_file(path, lines)
        with tempfile.TemporaryDirectory(dir=work) as tmp, fleet(args, 1, Path(tmp)) as gateways:
            run, _ = measure(f"SQLite, {lines:,} lines", gateways, path, lines, args)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            run.database_cpu_s = asyncio.run(store_alone(database_url("", tmp), lines))
        run.database_kind = "store calls alone"
        runs.append(run)
        path.unlink()
    return runs


def fleet_run(args: argparse.Namespace, work: Path) -> Run:
    lines = args.fleet_lines
    path = work / "input-fleet.jsonl"
    input_file(path, lines)
    with postgres_server() as server:
        url = create_database(server, "bench")
        pid = postmaster(int(server.rsplit(":", 1)[1].split("/")[0]))
        with fleet(args, 2, work / "fleet", url) as gateways:
            before = tree_cpu(pid)
            name = f"PostgreSQL, 2 gateways, {lines:,} lines"
            run, _ = measure(name, gateways, path, lines, args)
            run.database_cpu_s = tree_cpu(pid) - before
    run.database_kind = "PostgreSQL server"
    return run


def resume_run(args: argparse.Namespace, work: Path) -> Run:
    """SIGKILL at half way; restart on the same DATA_DIR; resume = restart to first new line."""
    lines = args.resume_lines
    path = work / "input-resume.jsonl"
    input_file(path, lines)
    home = work / "resume"
    with fleet(args, 1, home) as gateways:
        base = gateways[0].url
        started = time.monotonic()
        batch_id = submit(base, path)
        while completed(batch(base, batch_id)) < lines // 2:
            time.sleep(0.1)
        gateways[0].proc.kill()
        gateways[0].proc.wait()
        killed_at = time.monotonic()
    with fleet(args, 1, home) as gateways:  # same DATA_DIR, hence the same SQLite database
        base = gateways[0].url
        up = time.monotonic()
        at_kill = completed(batch(base, batch_id))
        while completed(batch(base, batch_id)) <= at_kill:
            time.sleep(0.05)
        resumed = time.monotonic()
        done = wait_done(base, batch_id)
        wall = time.monotonic() - started
        check_output(base, done, lines)
    note = (
        f"up {up - killed_at:.1f} s after the kill, first new line {resumed - up:.1f} s later "
        f"(lease {args.lease:g} s)"
    )
    return Run(
        f"SQLite, SIGKILL at half, {lines:,} lines", lines, 1, wall, ideal(lines, 1, args),
        float("nan"), float("nan"), "", float("nan"), float("nan"), note,
    )  # fmt: skip


def print_table(runs: list[Run], args: argparse.Namespace) -> None:
    rows = [
        "| run | wall s | ideal s | wall / ideal | gateway CPU ms/line | database CPU ms/line "
        "| gateway peak RSS MB | workers' RSS MB | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        per = 1000 / r.lines
        db = f"{r.database_cpu_s * per:.2f} ({r.database_kind})" if r.database_kind else "-"
        rows.append(
            f"| {r.name} | {r.wall_s:.1f} | {r.ideal_s:.1f} | {r.wall_s / r.ideal_s:.3f} "
            f"| {r.gateway_cpu_s * per:.2f} | {db} | {r.peak_rss_mb:.0f} "
            f"| {r.workers_rss_mb:.0f} | {r.note} |"
        )
    print("\n" + "\n".join(rows).replace("| nan ", "| - ") + "\n")
    timed = [r for r in runs if not r.note]
    wall_ok = all(r.wall_s / r.ideal_s <= WALL_TARGET for r in timed)
    rss_ok = all(r.peak_rss_mb < RSS_TARGET_MB for r in timed)
    print(
        f"targets: wall within {WALL_TARGET - 1:.0%} of ideal: {'met' if wall_ok else 'NOT met'}; "
        f"gateway peak RSS < {RSS_TARGET_MB:.0f} MB: {'met' if rss_ok else 'NOT met'}; "
        f"capacity {args.capacity} x {args.service_time:g} s per replica, cores {os.cpu_count()}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    skip = set(args.skip.split(","))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ocrflux-bench-batch-") as tmp:
        work = Path(tmp)
        if "sqlite" not in skip:
            runs += sqlite_runs(args, work)
        if "fleet" not in skip:
            runs.append(fleet_run(args, work))
        if "resume" not in skip:
            runs.append(resume_run(args, work))
    print_table(runs, args)


if __name__ == "__main__":
    main()
