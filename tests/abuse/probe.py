"""Ping /health until told to stop; print every latency (ms) as JSON. Run as a process of its
own so the attacking test's work never delays a ping (they would share a GIL otherwise).

    python -m tests.abuse.probe URL INTERVAL MAX_SECONDS

On SIGTERM it prints at once, counting a ping still waiting for its answer as lasting until
then (a stalled gateway is measured, not waited for).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import httpx


def main() -> None:
    url, interval, max_seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    latencies: list[float] = []
    waiting_since: float | None = None

    def report(*_: object) -> None:
        if waiting_since is not None:
            latencies.append((time.perf_counter() - waiting_since) * 1000)
        print(json.dumps(latencies), flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, report)
    deadline = time.monotonic() + max_seconds
    with httpx.Client(timeout=max_seconds) as client:
        print("ready", flush=True)
        while time.monotonic() < deadline:
            waiting_since = time.perf_counter()
            try:
                client.get(url).raise_for_status()
            except httpx.HTTPError:
                latencies.append(-1.0)  # a failed ping: the test fails on it
            else:
                latencies.append((time.perf_counter() - waiting_since) * 1000)
            waiting_since = None
            time.sleep(interval)
    report()


if __name__ == "__main__":
    main()
