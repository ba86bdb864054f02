"""Start real processes on loopback for end-to-end tests: the fake vLLM and the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FAKE_VLLM = Path(__file__).resolve().parent / "fake_vllm.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Process:
    """A started server process and its base URL."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FakeVLLMProcess(Process):
    """The fake vLLM, with helpers to steer it and read what it received."""

    def control(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_control", json=changes, timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset", timeout=5).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_requests", timeout=5).json()

    def events(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_events", timeout=5).json()

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_stats", timeout=5).json()


def start_fake_vllm(
    served_model_name: str = "ChatDOC/OCRFlux-3B",
    service_time: float = 0.0,
    port: int = 0,
    capacity: int = 0,
) -> FakeVLLMProcess:
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FAKE_VLLM),
            "--port",
            str(port),
            "--served-model-name",
            served_model_name,
            "--service-time",
            str(service_time),
            "--capacity",
            str(capacity),
        ],
    )
    fake = FakeVLLMProcess(proc, f"http://127.0.0.1:{port}", port)
    wait_for(f"{fake.url}/health", proc)
    return fake


def gateway_env(upstream_port: int, **settings: Any) -> dict[str, str]:
    """Environment for a gateway on a free loopback port in front of `upstream_port`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "VLLM_", "OCRFLUX_"))}
    env.update(
        {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(free_port()),
            "VLLM_URL": "http://127.0.0.1",
            "VLLM_PORT": str(upstream_port),
            "MAX_RETRIES": "1",
            "RETRY_BACKOFF": "0.01",
            "HEALTH_CHECK_INTERVAL": "0",
            # Each gateway its own jobs database and files (tests share no batch state).
            "DATA_DIR": tempfile.mkdtemp(prefix="ocrflux-test-data-"),
        }
    )
    env.update({k.upper(): str(v) for k, v in settings.items()})
    return env


def start_gateway(env: dict[str, str], timeout: float = 20.0) -> Process:
    """Run `python -m ocrflux.api_server` with `env` (see `gateway_env`) until /health answers."""
    port = int(env["API_PORT"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.api_server"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE if env.get("CAPTURE_STDERR") else None,
    )
    gateway = Process(proc, f"http://127.0.0.1:{port}", port, env)
    wait_for(f"{gateway.url}/health", proc, timeout)
    return gateway


@contextmanager
def running_gateway(env: dict[str, str]) -> Iterator[Process]:
    gateway = start_gateway(env)
    try:
        yield gateway
    finally:
        gateway.stop()


# --- the local engine's gateway, started the README's way -----------------------------------

README = ROOT / "README.md"
PROCESS_GUARD = Path(__file__).resolve().parent / "processguard"


def readme_quick_start() -> tuple[str, str]:
    """The README's first command (set up and start the gateway) and the curl right after it."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```bash\n", text.index("## Quick start")) + len("```bash\n")
    lines = text[start : text.index("```", start)].strip().splitlines()
    return lines[0], lines[1]


def guarded(env: dict[str, str], log: Path) -> dict[str, str]:
    """`env` with tests/processguard on: network attempts beyond loopback are logged to `log`."""
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{PROCESS_GUARD}:{path}" if path else str(PROCESS_GUARD)
    env["OCRFLUX_TEST_NETGUARD"] = str(log)
    return env


class SilentPort:
    """A listening socket where vLLM would be: it says whether anyone connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()  # the kernel queues a connection even unaccepted
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


def start_readme_gateway(env: dict[str, str], timeout: float = 180.0) -> Process:
    """The README's start command (the last step of its first command), run by bash in the
    repository with `env`; the venv steps before it are this test run's own environment."""
    command = readme_quick_start()[0].split(" && ")[-1]
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    # bash runs a lone simple command in its own process (exec), so signals reach the gateway.
    proc = subprocess.Popen(["bash", "-c", command], env=env, cwd=ROOT)
    gateway = Process(proc, f"http://127.0.0.1:{env['API_PORT']}", int(env["API_PORT"]))
    try:
        wait_for(f"{gateway.url}/health", proc, timeout)
    except BaseException:
        gateway.stop()
        raise
    return gateway
