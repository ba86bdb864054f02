"""`python -m bench`: the gateway's overhead against going direct to a fake vLLM (issue 6).

Starts the fake vLLM and the gateway (one per prompt mode) as processes on 127.0.0.1, runs
each workload direct and through the gateway in alternating rounds, checks peak RSS with
many large requests in flight, prints a Markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import orjson

from bench import procs
from bench.report import RESULTS, RssReport, WorkloadReport, git_state, markdown, record
from bench.runner import Driver, Options, gateway_for
from bench.workloads import build_workloads

NAMES = (
    "a_text",
    "b_page_passthrough",
    "e_page_seq",
    "b_page_ocrflux",
    "c_stream",
    "d_photo_12mp",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of each timed phase")
    p.add_argument("--rounds", type=int, default=2, help="direct/gateway alternations")
    p.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per target")
    p.add_argument("--service-time", type=float, default=0.05, help="fake vLLM seconds/answer")
    p.add_argument("--concurrency", type=int, default=16, help="connections (wrk workloads)")
    p.add_argument("--stream-concurrency", type=int, default=8)
    p.add_argument("--stream-tokens", type=int, default=1000)
    p.add_argument(
        "--chunk-delay", type=float, default=0.002, help="fake's seconds between stream tokens"
    )
    p.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    p.add_argument("--rss-requests", type=int, default=64, help="0 skips the RSS check")
    p.add_argument("--rss-bytes", type=int, default=2_000_000)
    p.add_argument("--rss-hold", type=float, default=3.0, help="fake's service time in the check")
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra gateway setting, e.g. IMAGE_WORKERS=2 (repeatable)",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the gateway of git revision REV (a temporary worktree), alternating "
        "with this one: before and after in one run",
    )
    p.add_argument(
        "--pin-gateway",
        type=int,
        metavar="CPU",
        help="run the gateway(s) on this CPU only, and wrk and the fake on the others",
    )
    p.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/<time>-<commit>.json)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    extra = dict(item.split("=", 1) for item in args.gateway_env)
    cpus = None
    if args.pin_gateway is not None:
        cpus = {args.pin_gateway}
        others = os.sched_getaffinity(0) - cpus
        if not others:
            raise SystemExit("--pin-gateway needs at least two CPUs")
        os.sched_setaffinity(0, others)  # this process, wrk and the fake: the other CPUs
    with contextlib.ExitStack() as stack:
        baseline = stack.enter_context(procs.checkout(args.baseline)) if args.baseline else None
        run(args, chosen, extra, cpus, baseline)


def run(
    args: argparse.Namespace,
    chosen: list[str],
    extra: dict[str, str],
    cpus: set[int] | None,
    baseline: Path | None,
) -> None:
    opts = Options(
        seconds=args.seconds,
        rounds=args.rounds,
        warmup=args.warmup,
        service_time=args.service_time,
        chunk_delay=args.chunk_delay,
        rss_requests=args.rss_requests,
        rss_bytes=args.rss_bytes,
        rss_hold=args.rss_hold,
        gateway_settings=extra,
        gateway_cpus=cpus,
        baseline_root=baseline,
        baseline_name=args.baseline or "",
    )
    print("building request bodies ...", flush=True)
    workloads = [
        w
        for w in build_workloads(args.stream_tokens, args.stream_concurrency, args.concurrency)
        if w.name in chosen
    ]
    reports: list[WorkloadReport] = []
    rss: list[RssReport] = []
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    fake = procs.start_fake(args.service_time)
    try:
        with tempfile.TemporaryDirectory(prefix="ocrflux-bench-") as tmp:
            workdir = Path(tmp)
            driver = Driver(fake, workdir, opts)
            for mode in ("passthrough", "ocrflux"):
                todo = [w for w in workloads if w.mode == mode]
                if todo:
                    with contextlib.ExitStack() as stack:
                        log = stack.enter_context(open(workdir / f"gateway-{mode}.log", "wb"))
                        gateway = stack.enter_context(gateway_for(fake, mode, opts, log))
                        print(f"gateway ({mode}) pid {gateway.proc.pid}", flush=True)
                        before = None
                        if baseline is not None:
                            old_log = stack.enter_context(
                                open(workdir / f"baseline-{mode}.log", "wb")
                            )
                            before = stack.enter_context(
                                gateway_for(fake, mode, opts, old_log, root=baseline)
                            )
                            print(f"baseline ({args.baseline}) pid {before.proc.pid}", flush=True)
                        for w in todo:
                            reports.extend(driver.run(gateway, w, before))
                if args.rss_requests:
                    # A fresh gateway: the allocator keeps what earlier image work used.
                    with (
                        open(workdir / f"gateway-rss-{mode}.log", "wb") as log,
                        gateway_for(fake, mode, opts, log) as gateway,
                    ):
                        rss.append(driver.rss(gateway, mode))
    finally:
        fake.stop()
    table = markdown(reports, rss)
    settings = {**vars(args), "out": str(args.out) if args.out else None}
    data = record(settings, reports, rss)
    print(f"\n{table}\n")
    for target in data["targets"]:
        print(f"- [{'x' if target['met'] else ' '}] {target['target']}: {target['value']:.2f}")
    machine = data["machine"]
    print(f"\n{machine['nproc']} CPUs, {machine['cpu_model']}, Python {machine['python']}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}-{git_state()['commit'] or 'nogit'}.json"
    out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    print(f"wrote {out} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
