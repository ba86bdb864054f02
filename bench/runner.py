"""Drive each workload direct to the fake and through the gateway, alternating, in one run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from bench import procs
from bench.report import Phase, RssReport, WorkloadReport
from bench.stream import burst, run_streams
from bench.workloads import Mode, Workload, page_answer, rss_body
from bench.wrk import LUA, LoadResult, run_wrk

CHAT = "/v1/chat/completions"
DEFAULT_FAKE = {"answer": "Hello from the fake vLLM.", "stream_chunks": 8, "chunk_delay": 0.0}


@dataclass(frozen=True)
class Options:
    seconds: float  # per phase
    rounds: int
    warmup: float
    service_time: float
    chunk_delay: float
    rss_requests: int
    rss_bytes: int
    rss_hold: float
    gateway_settings: dict[str, str]
    gateway_cpus: set[int] | None = None  # pin gateways here (None: anywhere)
    baseline_root: Path | None = None  # an earlier checkout, run beside this one
    baseline_name: str = ""


@contextlib.contextmanager
def gateway_for(
    fake: procs.FakeVLLMProcess,
    mode: Mode,
    opts: Options,
    log: IO[bytes],
    root: Path = procs.ROOT,
) -> Iterator[procs.Process]:
    gateway = procs.start_gateway(
        fake.port,
        log,
        root=root,
        cpus=opts.gateway_cpus,
        prompt_mode=mode,
        image_max_side=1024,
        **opts.gateway_settings,
    )
    try:
        yield gateway
    finally:
        gateway.stop()


def check(url: str, body: bytes, workload: Workload) -> None:
    """One request before timing: a benchmark of error answers would measure nothing."""
    response = httpx.post(
        url + CHAT, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"{workload.name}: {url} answered {response.status_code}: {response.text[:300]}"
        )
    if workload.mode == "ocrflux" and "Annual Report" not in response.text:
        raise RuntimeError(f"{workload.name}: the page was not read: {response.text[:300]}")


class Driver:
    def __init__(
        self,
        fake: procs.FakeVLLMProcess,
        workdir: Path,
        opts: Options,
        say: Callable[[str], object] = print,
    ) -> None:
        self.fake = fake
        self.workdir = workdir
        self.opts = opts
        self.say = say
        self.script = workdir / "post.lua"
        self.script.write_text(LUA)

    def _load(self, url: str, body_file: Path, body: bytes, w: Workload, secs: float) -> LoadResult:
        if w.client == "stream":
            return run_streams(url + CHAT, body, w.concurrency, secs)
        return run_wrk(url + CHAT, body_file, self.script, w.concurrency, secs)

    def run(
        self, gateway: procs.Process, w: Workload, baseline: procs.Process | None = None
    ) -> list[WorkloadReport]:
        """Direct, this gateway and (if given) the baseline gateway, in alternating rounds.

        One report per gateway; both share the direct phases, so "before" and "after" are
        compared against the same direct figures of the same run.
        """
        self.fake.control(
            record=False,
            delay=self.opts.service_time,
            **{**DEFAULT_FAKE, "chunk_delay": self.opts.chunk_delay, **w.fake},
        )
        urls = {"direct": self.fake.url, "gateway": gateway.url}
        pids = {"gateway": gateway.proc.pid}
        if baseline is not None:
            urls["baseline"] = baseline.url
            pids["baseline"] = baseline.proc.pid
        bodies = {t: w.direct_body if t == "direct" else w.gateway_body for t in urls}
        files = {}
        for target, body in bodies.items():
            files[target] = self.workdir / f"{w.name}-{target}.json"
            files[target].write_bytes(body)
        for target in urls:
            check(urls[target], bodies[target], w)

        def report(name: str) -> WorkloadReport:
            return WorkloadReport(
                name,
                w.description,
                w.mode,
                w.body_bytes,
                w.concurrency,
                "ttft" if w.client == "stream" else "request",
            )

        reports = {"gateway": report(w.name)}
        if baseline is not None:
            reports["baseline"] = report(f"{w.name} (before: {self.opts.baseline_name})")
        for target in urls:  # warm pools, caches and the allocator
            self._load(urls[target], files[target], bodies[target], w, self.opts.warmup)
        fake_pid = self.fake.proc.pid
        for pid in pids.values():
            procs.reset_peak(pid)
        for round_ in range(self.opts.rounds):
            for target in urls:
                for pid in pids.values():
                    waited = procs.settle(pid)
                    if waited > 1:
                        self.say(f"  (a gateway was busy with abandoned work for {waited:.1f} s)")
                pid = pids.get(target, gateway.proc.pid)
                gw0, fk0 = procs.cpu_seconds(pid), procs.cpu_seconds(fake_pid)
                load = self._load(urls[target], files[target], bodies[target], w, self.opts.seconds)
                gw1, fk1 = procs.cpu_seconds(pid), procs.cpu_seconds(fake_pid)
                cpu = gw1.total - gw0.total if target != "direct" else 0.0
                phase_target = "direct" if target == "direct" else "gateway"
                phase = Phase(phase_target, load, cpu, fk1.total - fk0.total)
                for key, r in reports.items():
                    if target in ("direct", key):
                        r.phases.append(phase)
                self.say(
                    f"  {w.name} round {round_ + 1} {target:8}: {load.rate:8.1f} req/s "
                    f"p50 {load.p50_ms:8.2f} ms p99 {load.p99_ms:8.2f} ms errors {load.errors}"
                )
        for key, r in reports.items():
            r.gateway_peak_rss_mb = procs.memory_kib(pids[key])["VmHWM"] / 1024
        return list(reports.values())

    def rss(self, gateway: procs.Process, mode: Mode) -> RssReport:
        """Peak RSS while `rss_requests` page requests are all in flight at once."""
        # The same body in both modes (ocrflux mode replaces the client's text with its prompt).
        body = rss_body(self.opts.rss_bytes)
        answer = page_answer() if mode == "ocrflux" else DEFAULT_FAKE["answer"]
        # A long service time holds every request inside the gateway at the same moment.
        self.fake.control(
            record=False, delay=self.opts.rss_hold, **{**DEFAULT_FAKE, "answer": answer}
        )
        pid = gateway.proc.pid
        burst(gateway.url + CHAT, body, 2)  # warm: imports, pools, first allocations
        time.sleep(0.2)
        baseline = procs.memory_kib(pid)["VmRSS"] / 1024
        procs.reset_peak(pid)
        started = time.perf_counter()
        timings = burst(gateway.url + CHAT, body, self.opts.rss_requests)
        elapsed = time.perf_counter() - started
        peak = procs.memory_kib(pid)["VmHWM"] / 1024
        ok = sum(t.status == 200 for t in timings)
        self.say(
            f"  rss {mode}: {ok}/{len(timings)} ok in {elapsed:.1f} s, "
            f"RSS {baseline:.0f} -> peak {peak:.0f} MB"
        )
        return RssReport(mode, len(timings), len(body), ok, baseline, peak, elapsed)
