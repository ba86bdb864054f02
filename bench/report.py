"""Summaries of the phases, the Markdown table, the targets, and the JSON record."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.wrk import LoadResult

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Phase:
    """One timed run against one target, with the gateway's CPU during it."""

    target: str  # "direct" or "gateway"
    load: LoadResult
    gateway_cpu_s: float = 0.0
    fake_cpu_s: float = 0.0


@dataclass
class WorkloadReport:
    name: str
    description: str
    mode: str
    body_bytes: int
    concurrency: int
    latency_kind: str  # "request" or "ttft"
    phases: list[Phase] = field(default_factory=list)
    gateway_peak_rss_mb: float = 0.0

    def _side(self, target: str) -> list[Phase]:
        return [p for p in self.phases if p.target == target]

    def rate(self, target: str) -> float:
        side = self._side(target)
        seconds = sum(p.load.seconds for p in side)
        return sum(p.load.requests for p in side) / seconds if seconds else 0.0

    def latency(self, target: str, which: str) -> float:
        """Mean over rounds of each round's p50 or p99 (rounds alternate, so drift averages)."""
        values = [getattr(p.load, f"{which}_ms") for p in self._side(target)]
        return statistics.fmean(values) if values else float("nan")

    def errors(self, target: str) -> int:
        return sum(p.load.errors for p in self._side(target))

    def gateway_cpu_ms_per_request(self) -> float:
        side = self._side("gateway")
        done = sum(p.load.requests for p in side)
        return 1000 * sum(p.gateway_cpu_s for p in side) / done if done else float("nan")

    def summary(self) -> dict[str, Any]:
        direct, gateway = self.rate("direct"), self.rate("gateway")
        return {
            "direct_rps": direct,
            "gateway_rps": gateway,
            "throughput_ratio": gateway / direct if direct else float("nan"),
            "direct_p50_ms": self.latency("direct", "p50"),
            "direct_p99_ms": self.latency("direct", "p99"),
            "gateway_p50_ms": self.latency("gateway", "p50"),
            "gateway_p99_ms": self.latency("gateway", "p99"),
            "added_p50_ms": self.latency("gateway", "p50") - self.latency("direct", "p50"),
            "added_p99_ms": self.latency("gateway", "p99") - self.latency("direct", "p99"),
            "gateway_cpu_ms_per_request": self.gateway_cpu_ms_per_request(),
            "gateway_peak_rss_mb": self.gateway_peak_rss_mb,
            "direct_errors": self.errors("direct"),
            "gateway_errors": self.errors("gateway"),
        }


@dataclass
class RssReport:
    mode: str
    requests: int
    body_bytes: int
    ok: int
    baseline_rss_mb: float
    peak_rss_mb: float
    seconds: float


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=RESULTS.parent.parent
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "ocrflux")),
    }


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN check


def markdown(workloads: list[WorkloadReport], rss: list[RssReport]) -> str:
    rows = [
        "| workload | body | conc | direct req/s | gateway req/s | ratio | direct p50 / p99 ms "
        "| gateway p50 / p99 ms | added p50 / p99 ms | gw CPU ms/req | gw peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in workloads:
        s = w.summary()
        name = f"{w.name} (TTFT)" if w.latency_kind == "ttft" else w.name
        errors = s["direct_errors"] + s["gateway_errors"]
        if errors:
            name += f" **{errors} errors**"
        rows.append(
            f"| {name} | {w.body_bytes / 1e6:.2f} MB | {w.concurrency} "
            f"| {_f(s['direct_rps'])} | {_f(s['gateway_rps'])} | {_f(s['throughput_ratio'], 2)} "
            f"| {_f(s['direct_p50_ms'], 2)} / {_f(s['direct_p99_ms'], 2)} "
            f"| {_f(s['gateway_p50_ms'], 2)} / {_f(s['gateway_p99_ms'], 2)} "
            f"| {_f(s['added_p50_ms'], 2)} / {_f(s['added_p99_ms'], 2)} "
            f"| {_f(s['gateway_cpu_ms_per_request'], 2)} | {_f(w.gateway_peak_rss_mb)} |"
        )
    if rss:
        rows += [
            "",
            "| RSS check | in flight | body | answered 200 | gw RSS before MB | gw peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        rows += [
            f"| {r.mode} | {r.requests} | {r.body_bytes / 1e6:.2f} MB | {r.ok} "
            f"| {_f(r.baseline_rss_mb)} | {_f(r.peak_rss_mb)} |"
            for r in rss
        ]
    return "\n".join(rows)


def _target(label: str, value: float, met: bool) -> dict[str, Any]:
    return {"target": label, "value": value, "met": met}


def targets(workloads: list[WorkloadReport], rss: list[RssReport]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    by_name = {w.name: w.summary() for w in workloads}
    found: list[dict[str, Any]] = []
    if page := by_name.get("b_page_passthrough"):
        added, ratio = page["added_p50_ms"], page["throughput_ratio"]
        found.append(_target("b passthrough: added p50 <= 1.5 ms", added, added <= 1.5))
        found.append(_target("b passthrough: throughput >= 90% of direct", ratio, ratio >= 0.9))
    if seq := by_name.get("e_page_seq"):
        cpu, added = seq["gateway_cpu_ms_per_request"], seq["added_p50_ms"]
        found.append(
            _target("e page, one at a time: gateway CPU <= 1.5 ms per request", cpu, cpu <= 1.5)
        )
        found.append(_target("e page, one at a time: added p50 <= 1.5 ms", added, added <= 1.5))
    if stream := by_name.get("c_stream"):
        added = stream["added_p50_ms"]
        found.append(_target("c stream: TTFT p50 within 1 ms of direct", added, added <= 1.0))
    for r in rss:
        label = (
            f"peak RSS <= 250 MB, {r.requests} x {r.body_bytes / 1e6:.1f} MB in flight ({r.mode})"
        )
        found.append(_target(label, r.peak_rss_mb, r.peak_rss_mb <= 250 and r.ok == r.requests))
    return found


def record(
    settings: dict[str, Any], workloads: list[WorkloadReport], rss: list[RssReport]
) -> dict[str, Any]:
    return {
        "machine": machine(),
        "git": git_state(),
        "settings": settings,
        "workloads": [
            {
                **{k: v for k, v in asdict(w).items() if k != "phases"},
                "summary": w.summary(),
                "phases": [
                    {
                        "target": p.target,
                        "gateway_cpu_s": p.gateway_cpu_s,
                        "fake_cpu_s": p.fake_cpu_s,
                        **{k: v for k, v in asdict(p.load).items()},
                        "rps": p.load.rate,
                    }
                    for p in w.phases
                ],
            }
            for w in workloads
        ],
        "rss": [asdict(r) for r in rss],
        "targets": targets(workloads, rss),
    }
