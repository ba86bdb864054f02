"""Webhooks end to end: a batch's end POSTed to a receiver on loopback, verified by the openai
SDK; retries, refusals, and restarts that neither lose nor repeat an event."""

from __future__ import annotations

import itertools
import re
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from ocrflux.settings import Settings
from tests.jobs.batch_support import (
    CHAT,
    client,
    finish,
    jobs_database,
    requests,
    sql,
    submit,
    wait,
)
from tests.jobs.test_webhooks import SECRET
from tests.jobs.webhook_receiver import Receiver
from tests.postgres import create_database
from tests.support import (
    ROOT,
    FakeVLLMProcess,
    Process,
    SilentPort,
    free_port,
    gateway_env,
    running_gateway,
    start_gateway,
)

BODIES = [{"model": "m", "messages": [{"role": "user", "content": f"line {n}"}]} for n in range(3)]
RETRY = 0.3  # WEBHOOK_RETRY_SECONDS: the first retry's wait, doubled each retry
# WEBHOOK_TIMEOUT: generous, so a receiver slowed by a busy machine is not a retry; the
# module's gateway uses a shorter one, and the receiver's "hang" outlasts it.
TIMEOUT, SHORT_TIMEOUT = 5.0, 1.0


def webhook_env(fake: FakeVLLMProcess, receiver: Receiver, **settings: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "prompt_mode": "passthrough",
        "batch_poll_interval": 0.1,
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_allowed_hosts": "127.0.0.1",
        "webhook_retry_seconds": RETRY,
        "webhook_timeout": TIMEOUT,
        "webhook_max_attempts": 4,
    }
    values.update(settings)
    return gateway_env(fake.port, **values)


def deliveries(gateway: Process) -> list[tuple[str, str, str, int, str | None]]:
    """(batch id, event type, state, attempts, last error) of every event, oldest first."""
    with sqlite3.connect(jobs_database(gateway), timeout=30) as conn:
        return conn.execute(
            "SELECT batch_id, event_type, state, attempts, last_error FROM webhook_deliveries"
            " ORDER BY created_at, id"
        ).fetchall()


def delivery_of(gateway: Process, batch_id: str) -> tuple[str, str, str, int, str | None]:
    """The one event of `batch_id` (rows made in the same second have no order but their ids')."""
    (row,) = [row for row in deliveries(gateway) if row[0] == batch_id]
    return row


def counted(gateway: Process) -> dict[str, float]:
    text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "ocrflux_webhook_deliveries"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver(hang_seconds=SHORT_TIMEOUT + 1.5)
    yield started
    started.close()


@pytest.fixture
def hooks(receiver: Receiver) -> Receiver:
    receiver.answers.clear()
    receiver.received.clear()
    return receiver


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess, receiver: Receiver) -> Iterator[Process]:
    started = start_gateway(webhook_env(fake_server, receiver, webhook_timeout=SHORT_TIMEOUT))
    yield started
    started.stop()


def test_each_end_of_a_batch_is_posted_as_openais_event(
    gateway: Process, hooks: Receiver, fake: FakeVLLMProcess
) -> None:
    sdk = client(gateway)
    completed = finish(sdk, submit(sdk, requests(CHAT, BODIES), CHAT))
    assert completed.status == "completed"
    refused = finish(sdk, submit(sdk, b"not json\n", CHAT))
    assert refused.status == "failed"
    fake.control(delay=5)  # lines stay in flight: the next two stop before they finish
    cancelled = submit(sdk, requests(CHAT, BODIES), CHAT)
    wait(lambda: sdk.batches.retrieve(cancelled.id), lambda b: b.status == "in_progress")
    sdk.batches.cancel(cancelled.id)
    expired = submit(sdk, requests(CHAT, BODIES), CHAT)
    wait(lambda: sdk.batches.retrieve(expired.id), lambda b: b.status == "in_progress")
    sql(gateway, "UPDATE batches SET expires_at = ? WHERE id = ?", int(time.time()), expired.id)
    assert finish(sdk, cancelled).status == "cancelled"
    assert finish(sdk, expired).status == "expired"

    received = hooks.wait(4)
    time.sleep(0.5)  # nothing more follows
    assert len(hooks.received) == 4
    assert {r.path for r in received} == {"/hooks/ocr"}
    assert {r.headers["content-type"] for r in received} == {"application/json"}
    events = {e.data.id: e for e in hooks.events(SECRET)}  # each verified by the openai SDK
    assert {batch_id: e.type for batch_id, e in events.items()} == {
        completed.id: "batch.completed",
        refused.id: "batch.failed",
        cancelled.id: "batch.cancelled",
        expired.id: "batch.expired",
    }
    assert all(e.object == "event" and e.id.startswith("evt_") for e in events.values())
    ended = events[completed.id].created_at
    assert completed.completed_at is not None and abs(ended - completed.completed_at) <= 1
    assert [r.headers["webhook-id"] for r in received] == [e.id for e in hooks.events(SECRET)]
    settled = wait(lambda: deliveries(gateway), lambda rows: all(r[2] != "pending" for r in rows))
    states = {row[0]: row[2:4] for row in settled}
    assert states == {batch_id: ("delivered", 1) for batch_id in events}


def test_5xx_and_timeouts_are_retried_with_backoff_under_the_same_id(
    gateway: Process, hooks: Receiver, fake: FakeVLLMProcess
) -> None:
    before = counted(gateway)
    hooks.answers[:] = [503, "hang", 502]  # "hang": answered after WEBHOOK_TIMEOUT
    sdk = client(gateway)
    batch = finish(sdk, submit(sdk, requests(CHAT, BODIES[:1]), CHAT))
    received = hooks.wait(4)
    time.sleep(0.5)
    assert len(hooks.received) == 4
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert [e.data.id for e in hooks.events(SECRET)] == [batch.id] * 4  # each attempt verifies
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(received)]
    # Waits of 0.3, 0.6 (after the attempt's timeout) and 1.2 s between the attempts.
    assert gaps[0] >= RETRY and gaps[1] >= 2 * RETRY + SHORT_TIMEOUT, gaps
    assert gaps[2] >= 4 * RETRY, gaps
    stamps = [int(r.headers["webhook-timestamp"]) for r in received]
    assert stamps == sorted(stamps) and stamps[-1] >= stamps[0] + 1  # signed at each attempt
    last = wait(lambda: delivery_of(gateway, batch.id), lambda row: row[2] != "pending")
    assert last[:4] == (batch.id, "batch.completed", "delivered", 4)
    after = counted(gateway)
    assert after.get("retried", 0) - before.get("retried", 0) == 3
    assert after["delivered"] - before.get("delivered", 0) == 1


def test_a_4xx_is_not_retried(gateway: Process, hooks: Receiver, fake: FakeVLLMProcess) -> None:
    before = counted(gateway)
    hooks.answers[:] = [400]
    sdk = client(gateway)
    batch = finish(sdk, submit(sdk, requests(CHAT, BODIES[:1]), CHAT))
    hooks.wait(1)
    time.sleep(4 * RETRY)  # a retry would have come by now
    assert len(hooks.received) == 1
    last = wait(lambda: delivery_of(gateway, batch.id), lambda row: row[2] != "pending")
    assert last == (batch.id, "batch.completed", "failed", 1, "HTTP 400")
    assert counted(gateway).get("failed", 0) - before.get("failed", 0) == 1


def test_a_restart_neither_repeats_a_delivered_event_nor_loses_an_undelivered_one(
    fake: FakeVLLMProcess,
) -> None:
    port = free_port()
    down = Receiver.__new__(Receiver)  # only its URL: nothing listens on `port` yet
    down.port = port
    env = webhook_env(fake, down, webhook_retry_seconds=0.2, webhook_max_attempts=100)
    first = start_gateway(env)
    sdk = client(first)
    undelivered = finish(sdk, submit(sdk, requests(CHAT, BODIES[:1]), CHAT))
    wait(lambda: deliveries(first), lambda rows: rows and rows[0][3] >= 2)  # refused, retrying
    first.proc.kill()  # SIGKILL with the event still pending
    first.proc.wait()
    receiver = Receiver(port)
    try:
        second = start_gateway({**env, "API_PORT": str(free_port())})  # same DATA_DIR
        try:
            (arrived,) = receiver.wait(1)
            assert [e.data.id for e in receiver.events(SECRET)] == [undelivered.id]
            wait(lambda: deliveries(second), lambda rows: rows[0][2] == "delivered")
            again = client(second)
            delivered = finish(again, submit(again, requests(CHAT, BODIES[:1]), CHAT))
            receiver.wait(2)
        finally:
            second.stop()
        third = start_gateway({**env, "API_PORT": str(free_port())})
        try:
            time.sleep(1.5)  # 15 polls of the outbox
            assert [e.data.id for e in receiver.events(SECRET)] == [undelivered.id, delivered.id]
            assert [row[2] for row in deliveries(third)] == ["delivered", "delivered"]
        finally:
            third.stop()
    finally:
        receiver.close()
    assert arrived.headers["webhook-id"] == receiver.events(SECRET)[0].id


def test_a_loopback_receiver_not_allowed_is_refused_without_connecting(
    fake: FakeVLLMProcess,
) -> None:
    silent = SilentPort()  # a listener that only says whether anyone connected
    target = Receiver.__new__(Receiver)
    target.port = silent.port
    env = webhook_env(fake, target, webhook_allowed_hosts="")  # 127.0.0.1 not allowed
    try:
        with running_gateway(env) as gateway:
            sdk = client(gateway)
            batch = finish(sdk, submit(sdk, requests(CHAT, BODIES[:1]), CHAT))
            rows = wait(lambda: deliveries(gateway), lambda rows: rows and rows[0][2] != "pending")
            assert rows == [
                (
                    batch.id,
                    "batch.completed",
                    "failed",
                    1,
                    "address 127.0.0.1 is not allowed (WEBHOOK_ALLOWED_HOSTS may name it)",
                )
            ]
            assert counted(gateway)["failed"] == 1
        assert not silent.connected()
    finally:
        silent.close()


def readme_webhooks() -> tuple[str, str]:
    """The README's command that makes a secret, and its receiver example."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("**Webhooks.**")
    command = re.search(r"`(python -c '.*?')`", text[start:], re.S)
    assert command is not None
    code = text.index("```python\n", start) + len("```python\n")
    return command.group(1).replace("\n", " "), text[code : text.index("```", code)]


def test_the_readme_secret_and_receiver_work_as_written(
    gateway: Process,
    hooks: Receiver,
    fake: FakeVLLMProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command, example = readme_webhooks()
    made = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    secret = made.stdout.strip()
    assert secret.startswith("whsec_") and secret != SECRET
    Settings(webhook_url="https://hooks.example.com/ocr", webhook_secret=secret)  # accepted

    sdk = client(gateway)
    batch = finish(sdk, submit(sdk, requests(CHAT, BODIES), CHAT))
    (event,) = hooks.wait(1)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    scope: dict[str, Any] = {}
    exec(example.replace("localhost:8000", f"127.0.0.1:{gateway.port}"), scope)
    with TestClient(scope["app"]) as receiver:
        answered = receiver.post("/hooks/ocr", content=event.body, headers=event.headers)
        forged = receiver.post("/hooks/ocr", content=event.body + b" ", headers=event.headers)
    assert answered.status_code == 204 and forged.status_code == 400
    printed = capsys.readouterr().out
    assert f"batch.completed {batch.id} 3 {batch.output_file_id}\n" in printed


def test_two_gateways_on_postgresql_send_each_event_once(
    fake: FakeVLLMProcess, hooks: Receiver, postgres_url: str
) -> None:
    database = create_database(postgres_url, f"w_{secrets.token_hex(6)}")
    env = webhook_env(fake, hooks, jobs_database_url=database)
    first = start_gateway(env)
    try:
        second = start_gateway({**env, "API_PORT": str(free_port())})  # same DATA_DIR too
        try:
            sdk = client(first)
            batches = [submit(sdk, requests(CHAT, BODIES), CHAT) for _ in range(6)]
            ended = [finish(sdk, batch) for batch in batches]
            assert {b.status for b in ended} == {"completed"}
            hooks.wait(6)
            time.sleep(1.0)  # 10 polls of both gateways: no second sending
            events = hooks.events(SECRET)
            assert sorted(e.data.id for e in events) == sorted(b.id for b in batches)
            assert len({e.id for e in events}) == 6
        finally:
            second.stop()
    finally:
        first.stop()
