"""`python -m bench.scaling`: throughput through one gateway with 1 vs N capacity-bound replicas.

Each fake vLLM serves at most `--capacity` answers at once for `--service-time` seconds (like
a GPU's batch), so one replica tops out at capacity / service-time answers per second. The
same closed-loop load (wrk, `--concurrency` connections of small text requests) goes through
the gateway with `VLLM_URLS` naming one replica, then all of them; the ratio of the two
throughputs is what adding replicas buys (ideal: N). Loopback only; prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import orjson

from bench import procs
from bench.wrk import LUA, LoadResult, run_wrk

CHAT = "/v1/chat/completions"
TARGET_RATIO = 3.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--capacity", type=int, default=4, help="answers in service per replica")
    p.add_argument("--service-time", type=float, default=0.2, help="seconds per answer")
    p.add_argument("--concurrency", type=int, default=64, help="wrk connections, both runs")
    p.add_argument("--seconds", type=float, default=10.0, help="timed run per setup")
    p.add_argument("--warmup", type=float, default=2.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    )
    fakes = []
    results: dict[int, LoadResult] = {}
    try:
        for _ in range(args.replicas):
            fake = procs.start_fake_vllm(service_time=args.service_time, capacity=args.capacity)
            fake.control(record=False)
            fakes.append(fake)
        with tempfile.TemporaryDirectory(prefix="ocrflux-scaling-") as tmp:
            work = Path(tmp)
            (work / "body.json").write_bytes(body)
            (work / "post.lua").write_text(LUA)
            for count in (1, args.replicas):
                results[count] = run_setup(args, fakes[:count], work)
    finally:
        for fake in fakes:
            fake.stop()
    print_table(args, results)


def run_setup(
    args: argparse.Namespace, fakes: list[procs.FakeVLLMProcess], work: Path
) -> LoadResult:
    urls = ",".join(f.url for f in fakes)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(work / f"gateway-{len(fakes)}.log", "wb"))
        gateway = procs.start_gateway(
            fakes[0].port,
            log,
            prompt_mode="passthrough",
            vllm_urls=urls,
            # Room for every replica's whole batch; the same for both setups.
            max_concurrent_requests=args.replicas * args.capacity,
            max_queue=4 * args.concurrency,
        )
        stack.callback(gateway.stop)
        url = gateway.url + CHAT
        run_wrk(url, work / "body.json", work / "post.lua", args.concurrency, args.warmup)
        served = [f.stats()["served"] for f in fakes]
        result = run_wrk(url, work / "body.json", work / "post.lua", args.concurrency, args.seconds)
        shares = [f.stats()["served"] - n for f, n in zip(fakes, served, strict=True)]
        print(
            f"{len(fakes)} replica(s): {result.rate:7.1f} req/s, p50 {result.p50_ms:7.1f} ms, "
            f"errors {result.errors}, answers per replica {shares}",
            flush=True,
        )
        return result


def print_table(args: argparse.Namespace, results: dict[int, LoadResult]) -> None:
    ideal = args.capacity / args.service_time
    rows = [
        "| replicas | req/s | ideal req/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for count, r in results.items():
        rows.append(
            f"| {count} | {r.rate:.1f} | {ideal * count:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.errors} |"
        )
    one, many = results[1].rate, results[args.replicas].rate
    ratio = many / one if one else float("nan")
    print("\n" + "\n".join(rows) + "\n")
    print(
        f"scaling ratio {args.replicas} vs 1 replica: {ratio:.2f}x "
        f"(target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
        f"{args.concurrency} connections, capacity {args.capacity} x "
        f"{args.service_time:g} s per replica"
    )


if __name__ == "__main__":
    main()
