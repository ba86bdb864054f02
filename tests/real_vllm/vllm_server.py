"""Start, stop and restart a real vLLM (CPU build) serving the tiny Qwen2.5-VL test model.

One `RealVLLM` is one server process group on its own loopback port, so a suite can run
several (replicas) side by side. The server is stopped by its own PID/process group, never
by name, so nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "real-vllm"
VENV_PYTHON = CACHE / "venv" / "bin" / "python"
MODEL_DIR = CACHE / "tiny-qwen2_5_vl"
LOG_DIR = CACHE / "logs"
SETUP_HINT = "run `bash scripts/real_vllm/setup_env.sh` (or scripts/real_vllm/run_suite.sh) first"

DEFAULT_MODEL_NAME = "ChatDOC/OCRFlux-3B"
LOOPBACK = "127.0.0.1"
# Cold start measured ~35-65 s on the 2-core machine; leave room for a loaded CI box.
STARTUP_TIMEOUT = 300.0


class VLLMStartError(RuntimeError):
    """The server exited or never became healthy; the message carries its log tail."""


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def server_env(cache: Path = CACHE) -> dict[str, str]:
    """Environment for vLLM: CPU, offline, no telemetry, every cache inside the clone."""
    env = dict(os.environ)
    # The gateway's own settings must not leak into vLLM, and vice versa.
    for key in ("VLLM_URL", "VLLM_PORT", "VLLM_API_KEY"):
        env.pop(key, None)
    env.update(
        {
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB, integers only; the tiny model needs little
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_CACHE_ROOT": str(cache / "home" / "vllm-cache"),
            "VLLM_CONFIG_ROOT": str(cache / "home" / "vllm-config"),
            "HF_HOME": str(cache / "home" / "hf"),
            "XDG_CACHE_HOME": str(cache / "home" / "xdg-cache"),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def check_installed() -> None:
    """Raise with a how-to-fix message when the venv or the tiny model is missing."""
    if not VENV_PYTHON.exists():
        raise FileNotFoundError(f"no real-vLLM venv at {VENV_PYTHON}: {SETUP_HINT}")
    if not (MODEL_DIR / "BUILD_INFO.json").exists():
        raise FileNotFoundError(f"no tiny model at {MODEL_DIR}: {SETUP_HINT}")


class RealVLLM:
    """One real vLLM OpenAI server on a loopback port, owned by this object.

    `port` stays the same across `stop()`/`start()`/`restart()`, so a gateway configured
    with it sees the same upstream come and go.
    """

    def __init__(
        self,
        *,
        served_model_name: str = DEFAULT_MODEL_NAME,
        port: int | None = None,
        model_dir: Path = MODEL_DIR,
        max_model_len: int = 8192,
        max_num_seqs: int = 4,
        max_images: int = 4,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
        name: str = "vllm",
    ) -> None:
        self.served_model_name = served_model_name
        self.port = port if port is not None else free_port()
        self.model_dir = model_dir
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.max_images = max_images
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.log_path = LOG_DIR / f"{name}-{self.port}.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL without the /v1 suffix, e.g. http://127.0.0.1:PORT."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        # `vllm serve` fails here (the distribution is `vllm-cpu`, not `vllm`); the module works.
        return [
            str(VENV_PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-seqs",
            str(self.max_num_seqs),
            "--limit-mm-per-prompt",
            json.dumps({"image": self.max_images, "video": 0}),
            "--dtype",
            "bfloat16",
            "--enforce-eager",
            "--seed",
            "0",
            *self.extra_args,
        ]

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, served_model_name: str | None = None) -> None:
        """Spawn the server and block until /health answers 200 (or raise VLLMStartError)."""
        if self.running:
            raise RuntimeError(f"vLLM already running on port {self.port} (pid {self.pid})")
        check_installed()
        if served_model_name is not None:
            self.served_model_name = served_model_name
        self._wait_port_free()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.command())}\n".encode())
            log.flush()
            # Own session = own process group, so stop() can reach the engine and worker
            # children by the leader's PID without touching anything else.
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env(),
                cwd=CACHE,
                start_new_session=True,
            )
        try:
            self._wait_healthy(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after `timeout` s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # The leader may exit before its engine/worker children; reap the group too.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def restart(self, served_model_name: str | None = None) -> None:
        self.stop()
        self.start(served_model_name)

    def __enter__(self) -> RealVLLM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- observation ----------------------------------------------------------------------
    def rss_bytes(self) -> int:
        """Resident memory of the whole server process group (API server, engine, worker)."""
        if self._proc is None:
            return 0
        total = 0
        for pid in _group_pids(self._proc.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                total += pages * os.sysconf("SC_PAGE_SIZE")
        return total

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- internals ------------------------------------------------------------------------
    def _wait_port_free(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not _port_is_free(self.port):
            if time.monotonic() > deadline:
                raise VLLMStartError(f"port {self.port} still busy after {timeout:.0f} s")
            time.sleep(0.2)

    def _wait_healthy(self, began: float) -> None:
        deadline = began + self.startup_timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                assert self._proc is not None
                code = self._proc.poll()
                if code is not None:
                    raise VLLMStartError(
                        f"vLLM exited with {code} during start-up; log {self.log_path}:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise VLLMStartError(
                        f"vLLM not healthy after {self.startup_timeout:.0f} s; "
                        f"log {self.log_path}:\n" + self.log_tail()
                    )
                time.sleep(0.5)


def _group_pids(pgid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Field 5 of /proc/PID/stat is the process group; the name (field 2) may hold
            # spaces, so split after its closing parenthesis.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                yield int(entry.name)


def _group_alive(pgid: int) -> bool:
    return any(True for _ in _group_pids(pgid))


def start_all(servers: Sequence[RealVLLM]) -> None:
    """Start several servers at once (replicas); on any failure stop them all and raise."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        futures = [pool.submit(server.start) for server in servers]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        for server in servers:
            server.stop()
        raise failed[0]
