"""The fake vLLM and the gateway as processes on loopback, and what /proc says about them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support import FakeVLLMProcess, Process, free_port, gateway_env, start_fake_vllm

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def cpu_seconds(pid: int) -> CpuSample:
    """utime and stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in (...) may contain spaces
    return CpuSample(int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start or the last `reset_peak`), in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    """Start a new VmHWM window (Linux >= 4.0); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def settle(pid: int, quiet: float = 0.01, window: float = 0.25, timeout: float = 60.0) -> float:
    """Wait until `pid` is idle (a gateway finishes abandoned requests after the client stops).

    Returns the seconds waited; without this, leftover work of one phase would be charged to
    the next one (and slow the fake during a direct phase).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid).total
        time.sleep(window)
        if cpu_seconds(pid).total - before <= quiet:
            break
    return time.monotonic() - started


def start_fake(service_time: float) -> FakeVLLMProcess:
    fake = start_fake_vllm(service_time=service_time)
    # Recording keeps every request (and decodes its images): off, or the fake is the bottleneck.
    fake.control(record=False)
    return fake


def start_gateway(
    upstream_port: int,
    log: IO[bytes],
    root: Path = ROOT,
    cpus: set[int] | None = None,
    **settings: Any,
) -> Process:
    """`python -m ocrflux.api_server` with its log in `log` (a pipe nobody reads would block).

    `root`: the checkout whose `ocrflux` runs (another commit's, for before/after runs);
    `cpus`: the CPUs the gateway may use (None: any).
    """
    env = gateway_env(upstream_port, **settings)
    env["PYTHONPATH"] = str(root)
    port = int(env["API_PORT"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.api_server"],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    gateway = Process(proc, f"http://127.0.0.1:{port}", port)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            log.flush()
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{tail}")
        try:
            httpx.get(f"{gateway.url}/health", timeout=0.5)
            return gateway
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                gateway.stop()
                raise TimeoutError("gateway did not answer /health within 30 s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """A temporary worktree of `revision` (for running an earlier gateway beside this one)."""
    with tempfile.TemporaryDirectory(prefix="ocrflux-baseline-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


__all__ = [
    "CpuSample",
    "FakeVLLMProcess",
    "Process",
    "checkout",
    "cpu_seconds",
    "free_port",
    "memory_kib",
    "reset_peak",
    "settle",
    "start_fake",
    "start_fake_vllm",
    "start_gateway",
]
