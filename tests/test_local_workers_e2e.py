"""The local engine's worker processes, end to end: a worker that dies costs its page at most.

The module's gateway (`OCR_BACKEND=local`, one OCR worker) runs under tests/processguard with
OCRFLUX_TEST_CRASH_PAGES: a worker that reads "CRASH ALWAYS" on a page exits with the page in
flight, "CRASH ONCE" does so the first time only. A worker can also be killed by its pid.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.documents.pdfs import Page as PdfPage
from tests.documents.pdfs import make_pdf
from tests.support import Process, free_port, gateway_env, guarded, start_gateway
from tests.test_local_backend_e2e import chat_body, one_line, one_line_png, png_data_url

TIMEOUT = 180.0  # real OCR on a shared 2-core machine
MODEL_LOAD = 180.0


@pytest.fixture(scope="module")
def crash_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    base = tmp_path_factory.mktemp("crash-gateway")
    env = gateway_env(free_port(), ocr_backend="local", local_workers=1, local_threads=1)
    env = guarded(env, base / "net.log")
    env["OCRFLUX_TEST_CRASH_PAGES"] = str(base)
    gateway = start_gateway(env, timeout=MODEL_LOAD)
    yield gateway
    gateway.stop()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def ocr_workers(gateway: Process) -> list[int]:
    """The gateway's local OCR workers: its children that mapped ONNX Runtime."""
    found = []
    for pid in children(gateway.proc.pid):
        try:
            if "onnxruntime" in Path(f"/proc/{pid}/maps").read_text():
                found.append(pid)
        except FileNotFoundError:
            pass  # exited meanwhile
    return found


def gone(pid: int) -> bool:
    """Exited (or a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_until(check: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_worker_killed_while_idle_is_replaced_on_the_next_page(crash_gateway: Process) -> None:
    [worker] = ocr_workers(crash_gateway)
    os.kill(worker, signal.SIGKILL)
    assert wait_until(lambda: gone(worker), 10)
    files = {"file": ("page.png", one_line_png("Read by a fresh worker"), "image/png")}
    response = httpx.post(f"{crash_gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["markdown"] for p in body["pages"]] == ["Read by a fresh worker"]
    assert body["fallback_pages"] == []
    assert ocr_workers(crash_gateway) != [worker]


def test_a_page_whose_worker_dies_is_asked_again_once_then_is_a_fallback_page(
    crash_gateway: Process,
) -> None:
    blocks = [
        ("# CRASH ONCE", "The first page is read on the second try."),
        ("# CRASH ALWAYS", "This page ends every worker that reads it."),
        ("# Third page", "Read as usual."),
    ]
    pages = [PdfPage(blocks=b, font_size=14) for b in blocks]
    files = {"file": ("crash.pdf", make_pdf(pages), "application/pdf")}
    response = httpx.post(f"{crash_gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback_pages"] == [1]
    assert [p["markdown"] for p in body["pages"]] == [
        "# CRASH ONCE\n\nThe first page is read on the second try.",
        "",
        "# Third page\n\nRead as usual.",
    ]
    assert [p["engine"] for p in body["pages"]] == ["local", "local", "local"]


def test_a_stream_whose_page_kills_its_worker_ends_with_an_error_event_and_done(
    crash_gateway: Process,
) -> None:
    body = chat_body(png_data_url(one_line("CRASH ALWAYS")), stream=True)
    with httpx.stream(
        "POST", f"{crash_gateway.url}/v1/chat/completions", json=body, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == "local_engine_unavailable"
    assert error["message"] == "a local OCR worker process died while reading a page"
    # The gateway still serves, with a fresh worker.
    files = {"file": ("page.png", one_line_png("Still serving"), "image/png")}
    after = httpx.post(f"{crash_gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
    assert after.status_code == 200
    assert after.json()["pages"][0]["markdown"] == "Still serving"


HEAVY_TEXT = (
    "Every worker reads this paragraph in full, line by line, so that a page of it costs the "
    "engine a good second or more on a busy machine, which is the point of the test below. "
) * 6


def test_a_one_page_request_beside_a_heavy_document_is_read_before_its_other_pages(
    crash_gateway: Process,
) -> None:
    """One worker, a 6-page document streaming: a one-image request sent once the document's
    first page is out waits for the page in the worker, not for the document's queue."""
    pages = [PdfPage(blocks=(f"# Heavy page {n}", HEAVY_TEXT)) for n in range(6)]
    files = {"file": ("heavy.pdf", make_pdf(pages), "application/pdf")}
    heavy_pages: list[float] = []  # when each page event arrived
    first_page = threading.Event()

    def read_heavy() -> None:
        with httpx.stream(
            "POST",
            f"{crash_gateway.url}/v1/ocr",
            files=files,
            headers={"Accept": "text/event-stream"},
            timeout=TIMEOUT,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line == "event: page":
                    heavy_pages.append(time.monotonic())
                    first_page.set()

    heavy = threading.Thread(target=read_heavy)
    heavy.start()
    try:
        assert first_page.wait(TIMEOUT)
        sent = time.monotonic()
        one = {"file": ("page.png", one_line_png("Served in turn"), "image/png")}
        response = httpx.post(f"{crash_gateway.url}/v1/ocr", files=one, timeout=TIMEOUT)
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        assert response.json()["pages"][0]["markdown"] == "Served in turn"
    finally:
        heavy.join(TIMEOUT)
    assert len(heavy_pages) == 6
    during = [t for t in heavy_pages if sent < t < answered]
    # The page that was in the worker when it asked, and on a loaded machine one more that
    # the worker took while the image was still being prepared; the rest still to come (a
    # first-come queue would read all five before it).
    assert len(during) <= 2, (len(during), answered - sent)
    assert len([t for t in heavy_pages if t > answered]) >= 3
