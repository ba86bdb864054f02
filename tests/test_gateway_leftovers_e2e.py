"""What a gateway killed with SIGKILL leaves behind: no worker process, and no folder for long.

A SIGKILLed gateway cannot shut its pools down nor remove its documents' folder: its workers
must notice their parent is gone and exit, and the next gateway to start removes the folders
of gateways that are dead (never those of one that runs).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.documents.pdfs import Page as PdfPage
from tests.documents.pdfs import make_pdf
from tests.support import Process, free_port, gateway_env, start_gateway

MODEL_LOAD = 180.0
TIMEOUT = 180.0


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    """Exited (or a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        return ""


def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def sigkill(gateway: Process) -> None:
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(timeout=10)


def document_folders(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("ocrflux-documents-*")}


def test_workers_exit_within_seconds_of_a_sigkilled_gateway(tmp_path: Path) -> None:
    env = gateway_env(
        free_port(), ocr_backend="local", local_workers=1, local_threads=1, render_workers=1
    )
    env["TMPDIR"] = str(tmp_path)
    gateway = start_gateway(env, timeout=MODEL_LOAD)
    workers: list[int] = []
    try:
        page = PdfPage(blocks=("# Workers", "A page to start the render workers."))
        files = {"file": ("one.pdf", make_pdf([page]), "application/pdf")}
        response = httpx.post(f"{gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        workers = children(gateway.proc.pid)
        assert any("onnxruntime" in maps(pid) for pid in workers)  # a local OCR worker
        assert any("pdfium" in maps(pid) for pid in workers)  # a render worker
        sigkill(gateway)
        assert wait_until(lambda: all(gone(pid) for pid in workers), 5), [
            pid for pid in workers if not gone(pid)
        ]
    finally:
        gateway.stop()
        for pid in workers:  # never leave them to the shared machine
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_start_up_removes_the_folders_of_dead_gateways_and_keeps_live_ones(
    tmp_path: Path,
) -> None:
    def start() -> Process:
        env = gateway_env(free_port(), data_dir=tmp_path / f"data-{time.monotonic_ns()}")
        env["TMPDIR"] = str(tmp_path)
        return start_gateway(env)

    killed = start()
    sigkill(killed)
    left = document_folders(tmp_path)
    assert len(left) == 1  # what the killed gateway could not remove

    live = start()
    try:
        live_folders = document_folders(tmp_path) - left
        assert len(live_folders) == 1
        third = start()
        try:
            folders = document_folders(tmp_path)
            assert left.isdisjoint(folders)  # the dead gateway's folder is gone
            assert live_folders <= folders  # the running gateway's is kept
            assert len(folders) == 2  # and the new gateway has its own
        finally:
            third.stop()
    finally:
        live.stop()
    assert document_folders(tmp_path) == set()  # a gateway stopped in order removes its own
