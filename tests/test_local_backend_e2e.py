"""The gateway with the embedded CPU engine, end to end: no vLLM anywhere, real OCR.

The session's `local_gateway` (tests/conftest.py: `OCR_BACKEND=local`, started by the README's
own command) serves most tests; its vLLM port is a listening socket that must never see a
connection, and every process it starts runs under the network guard (tests/processguard).
Real OCR costs seconds a page on a busy machine, so the documents are small.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from PIL import Image, ImageDraw

from ocrflux.engines.base import BACKEND_HEADER
from tests.documents.pdfs import Page as PdfPage
from tests.documents.pdfs import make_pdf, table
from tests.engines.local.pages import SANS, accuracy, english_form, font
from tests.engines.local.script_pages import AR_LINES, arabic_page
from tests.support import (
    FakeVLLMProcess,
    Process,
    SilentPort,
    free_port,
    gateway_env,
    guarded,
    start_fake_vllm,
    start_gateway,
)

TIMEOUT = 180.0  # real OCR on a shared 2-core machine
MODEL_LOAD = 180.0


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def one_line(text: str) -> Image.Image:
    image = Image.new("RGB", (900, 300), "white")
    ImageDraw.Draw(image).text((60, 120), text, font=font(SANS, 36), fill="black")
    return image


def chat_body(url: str, **extra: object) -> dict[str, object]:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    return {"model": "any-name", "messages": [{"role": "user", "content": content}], **extra}


# --- the local backend ---------------------------------------------------------------------


def test_openai_sdk_chat_with_a_page_image(local_gateway: Process) -> None:
    page = english_form()
    client = openai.OpenAI(base_url=f"{local_gateway.url}/v1", api_key="k", timeout=TIMEOUT)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read this form"},
                    {"type": "image_url", "image_url": {"url": png_data_url(page.image)}},
                ],
            }
        ],
    )
    assert raw.headers[BACKEND_HEADER] == "local"
    reply = raw.parse()
    content = reply.choices[0].message.content or ""
    assert reply.model == "gpt-4o"
    assert accuracy(page.text, content) >= 0.95
    assert "[√] Fire exits are clear" in content and "[ ] Ladders are tagged" in content
    assert "<td>Fire drill</td>" in content
    assert reply.usage is not None and reply.usage.prompt_tokens == 0
    assert reply.usage.completion_tokens > 100  # characters recognised


def test_a_stream_names_the_engine_up_front_and_in_its_last_chunk(
    local_gateway: Process,
) -> None:
    body = chat_body(png_data_url(one_line("Streams name their engine")), stream=True)
    with httpx.stream(
        "POST", f"{local_gateway.url}/v1/chat/completions", json=body, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200
        assert response.headers[BACKEND_HEADER] == "local"
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Streams name their engine"
    assert chunks[-1]["ocrflux_backend"] == "local"


def test_ocr_endpoint_reads_a_multi_page_pdf(local_gateway: Process) -> None:
    pages = [
        PdfPage(
            blocks=(
                "# Quarterly report",
                "Revenue grew by twelve percent in the third quarter, driven by strong sales "
                "of the new product line across all",
            )
        ),
        PdfPage(
            blocks=(
                "regions and a lower cost of materials.",
                table([["Region", "Q2", "Q3"], ["North", "120", "134"], ["South", "98", "110"]]),
            )
        ),
    ]
    files = {"file": ("report.pdf", make_pdf(pages), "application/pdf")}
    response = httpx.post(f"{local_gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.headers[BACKEND_HEADER] == "local"
    body = response.json()
    assert [p["engine"] for p in body["pages"]] == ["local", "local"]
    assert body["fallback_pages"] == []
    text = body["document_text"]
    # The sentence cut by the page break is one paragraph again (the local engine's rule).
    paragraph = (
        "Revenue grew by twelve percent in the third quarter, driven by strong sales of the "
        "new product line across all regions and a lower cost of materials."
    )
    assert text.startswith("# Quarterly report\n\n")
    assert accuracy(paragraph, text.split("\n\n")[1]) >= 0.97
    assert "<td>North</td><td>120</td><td>134</td>" in text
    assert body["usage"]["prompt_tokens"] == 0 and body["usage"]["completion_tokens"] > 100


def test_an_arabic_page_is_read_not_an_empty_success(local_gateway: Process) -> None:
    # The embedded recogniser reads no Arabic (its answer was "" with no error): the worker
    # hands the page to the installed Tesseract (.ci/run installs tesseract-ocr-ara).
    files = {"file": ("arabic.png", arabic_page().png(), "image/png")}
    response = httpx.post(f"{local_gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback_pages"] == [] and body["pages"][0]["engine"] == "local"
    assert accuracy(" ".join(AR_LINES), body["document_text"]) >= 0.9, body["document_text"]


def test_health_and_ready_report_the_backend_without_vllm(local_gateway: Process) -> None:
    ready = httpx.get(f"{local_gateway.url}/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "backend": "local",
        "local": {"workers": 2, "threads": 1},
        "upstream": [],
    }
    health = httpx.get(f"{local_gateway.url}/health", timeout=10).json()
    assert (health["status"], health["backend"], health["upstream"]) == ("ok", "local", [])


def test_text_only_requests_are_refused_with_the_reason(local_gateway: Process) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    response = httpx.post(f"{local_gateway.url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 400
    assert "OCR_BACKEND=local" in response.json()["error"]["message"]


def test_nothing_touched_the_network_or_vllm(
    local_gateway: Process, silent_vllm_port: SilentPort, netguard_log: Path
) -> None:
    """Runs after the reads above (file order): the models were loaded and used offline."""
    assert not silent_vllm_port.connected()
    assert not netguard_log.exists() or netguard_log.read_text() == ""
    assert local_gateway.proc.poll() is None


def test_the_ocr_workers_do_not_load_the_gateway(local_gateway: Process) -> None:
    """Spawned workers re-import `python -m ocrflux.api_server`'s top level: it must stay
    light (measured: ~200 MB per worker with the gateway loaded, ~170 MB without)."""
    children = Path(f"/proc/{local_gateway.proc.pid}/task/{local_gateway.proc.pid}/children")
    workers = [
        pid
        for pid in children.read_text().split()
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) >= 2  # the OCR workers (the renderer's, once it has rendered, too)
    for pid in workers:
        maps = Path(f"/proc/{pid}/maps").read_text()
        # Compiled parts of the web stack: a worker that imported the gateway maps them.
        assert "pydantic_core" not in maps and "uvloop" not in maps and "httptools" not in maps


def test_the_network_guard_sees_every_process(tmp_path: Path) -> None:
    """The guard can fail: a process that reaches out beyond loopback is logged."""
    log = tmp_path / "attempts.log"
    code = (
        "import urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen('http://198.51.100.7/x', timeout=2)\n"
        "except OSError:\n"
        "    pass\n"
    )
    env = guarded({"PATH": "/usr/bin:/bin"}, log)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert "198.51.100.7" in log.read_text()


# --- start-up refusal ----------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["OCR_BACKEND", "FALLBACK_BACKEND"])
def test_without_the_cpu_extra_start_up_stops_with_one_line(setting: str) -> None:
    env = gateway_env(free_port(), **{setting: "local"})
    env = guarded(env, Path("/dev/null"))
    env["OCRFLUX_TEST_HIDE_MODULES"] = "rapidocr,onnxruntime"
    result = subprocess.run(
        [sys.executable, "-m", "ocrflux.api_server"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ocrflux: {setting}=local: the local OCR engine needs rapidocr, onnxruntime: "
        "install with pip install -e '.[cpu]'"
    ]


# --- fallback ------------------------------------------------------------------------------


@pytest.fixture
def fallback_fake() -> Iterator[FakeVLLMProcess]:
    fake = start_fake_vllm()
    yield fake
    fake.stop()


def test_pages_fall_back_to_the_local_engine_when_vllm_is_down(
    fallback_fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    answer = (
        '{"primary_language": "en", "is_rotation_valid": true, "rotation_correction": 0, '
        '"is_table": false, "is_diagram": false, "natural_text": "Read by the model."}'
    )
    fallback_fake.control(answer=answer)
    env = gateway_env(fallback_fake.port, fallback_backend="local", local_workers=1)
    gateway = start_gateway(guarded(env, tmp_path / "net.log"), timeout=MODEL_LOAD)
    try:
        url = f"{gateway.url}/v1/chat/completions"
        body = chat_body(png_data_url(one_line("Read by the local engine")))
        up = httpx.post(url, json=body, timeout=TIMEOUT)
        assert up.status_code == 200 and up.headers[BACKEND_HEADER] == "vllm"
        assert up.json()["choices"][0]["message"]["content"] == "Read by the model."
        assert httpx.get(f"{gateway.url}/health").json()["backend"] == "vllm+local"

        fallback_fake.stop()  # every replica down
        down = httpx.post(url, json=body, timeout=TIMEOUT)
        assert down.status_code == 200, down.text
        assert down.headers[BACKEND_HEADER] == "local"
        assert down.json()["choices"][0]["message"]["content"] == "Read by the local engine"

        ready = httpx.get(f"{gateway.url}/ready", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["upstream"][0]["reachable"] is False

        # Known down now: pages go straight to the local engine, /v1/ocr says so per page.
        files = {"file": ("page.png", one_line_png("Straight to the local engine"), "image/png")}
        ocr = httpx.post(f"{gateway.url}/v1/ocr", files=files, timeout=TIMEOUT)
        assert ocr.status_code == 200 and ocr.headers[BACKEND_HEADER] == "local"
        assert ocr.json()["pages"][0]["engine"] == "local"
        assert ocr.json()["pages"][0]["markdown"] == "Straight to the local engine"
    finally:
        gateway.stop()


def one_line_png(text: str) -> bytes:
    buffer = io.BytesIO()
    one_line(text).save(buffer, "PNG")
    return buffer.getvalue()
