"""Streams are bounded: TOTAL_TIMEOUT ends them with an error event, and a client that stops
reading is cut after CLIENT_WRITE_TIMEOUT so it cannot pin an upstream connection."""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable

import httpx
import orjson
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

CHAT = "/v1/chat/completions"


def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def in_flight(gateway: Process) -> float:
    """Upstream calls holding a slot, from /metrics."""
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        if family.name == "ocrflux_upstream_in_flight":
            return family.samples[0].value
    raise AssertionError("no ocrflux_upstream_in_flight in /metrics")


def sse_events(text: str) -> list[str]:
    """The data of each event; a failed stream must still end with [DONE], which is dropped."""
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    return events[:-1]


def test_total_timeout_ends_a_passthrough_stream_with_an_error_event(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="passthrough", total_timeout=1.0)
    fake.control(stream_chunks=50, chunk_delay=0.2, answer="x" * 200)  # 10 s of stream
    started = time.monotonic()
    response = httpx.post(
        gateway.url + CHAT,
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    events = sse_events(response.text)
    assert len(events) > 1  # some content came first
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "timeout" and "1 s" in last["error"]["message"]
    assert elapsed < 4, elapsed
    time.sleep(0.3)
    assert any(e["event"] == "client_disconnected" for e in fake.events())  # vLLM was told


def test_total_timeout_ends_an_ocrflux_stream_with_an_error_event(
    make_gateway: Callable[..., Process], fake: FakeVLLMProcess
) -> None:
    gateway = make_gateway(prompt_mode="ocrflux", total_timeout=1.0)
    fake.control(delay=3.0)  # every page takes longer than the whole request may
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), "white").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    image = {"type": "image_url", "image_url": {"url": url}}
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": [image]}]}
    started = time.monotonic()
    response = httpx.post(gateway.url + CHAT, json=body, timeout=30)
    assert time.monotonic() - started < 2.8
    events = sse_events(response.text)
    assert orjson.loads(events[-1])["error"]["code"] == "timeout"


def test_a_client_that_stops_reading_is_cut_and_the_upstream_released(
    fake: FakeVLLMProcess,
) -> None:
    env = gateway_env(
        fake.port, prompt_mode="passthrough", client_write_timeout=1.0, capture_stderr="1"
    )
    gateway = start_gateway(env)
    # ~8 MB of stream: more than the kernel buffers between us and the gateway can hold.
    fake.control(stream_chunks=4000, answer="y" * 8_000_000)
    body = orjson.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gateway.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-request-id: stalled-1\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        until(lambda: in_flight(gateway) == 1, 10, "the stream is under way")
        until(lambda: in_flight(gateway) == 0, 15, "the gateway let go of the upstream stream")
        sock.close()
        # The gateway still answers others at once.
        ok = httpx.post(
            gateway.url + CHAT, json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert ok.status_code == 200
    finally:
        gateway.stop()
    assert gateway.proc.stderr is not None
    log = gateway.proc.stderr.read().decode()
    (line,) = [x for x in log.splitlines() if "stalled-1" in x and "ocrflux.access" in x]
    assert "cut: the client took nothing for 1 s" in line
    assert "Traceback" not in log and " ERROR " not in log
