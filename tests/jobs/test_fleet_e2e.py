"""A fleet: two gateways on one real PostgreSQL and one shared DATA_DIR, each in front of its
own capacity-bound fake vLLM replica.

(a) One gateway is killed with SIGKILL mid-batch: the other finishes the batch once the dead
    one's leases expire; every custom_id is in the output exactly once, and no line was sent
    upstream again after it had been committed.
(b) Both gateways together finish a batch faster than one alone (each replica serves only
    K answers at once, so one gateway's rate is bounded by its replica).
"""

from __future__ import annotations

import secrets
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.jobs.batch_support import (
    CHAT,
    by_custom_id,
    client,
    finish,
    read_lines,
    requests,
    submit,
    wait,
)
from tests.postgres import create_database
from tests.support import FakeVLLMProcess, Process, gateway_env, start_fake_vllm, start_gateway

LEASE = 3  # seconds: a dead gateway's lines are claimable again this soon


@pytest.fixture
def database(postgres_url: str) -> str:
    """A fresh database on the session's PostgreSQL server (its postgresql:// URL)."""
    return create_database(postgres_url, f"fleet_{secrets.token_hex(6)}")


@pytest.fixture
def replicas() -> Iterator[list[FakeVLLMProcess]]:
    """Two fake vLLM replicas (one per gateway), each at most 4 answers at once."""
    with ExitStack() as stack:
        fakes = []
        for _ in range(2):
            fake = start_fake_vllm()
            stack.callback(fake.stop)
            fakes.append(fake)
        yield fakes


def fleet_env(
    database: str, data_dir: str, fake: FakeVLLMProcess, **settings: Any
) -> dict[str, str]:
    return gateway_env(
        fake.port,
        prompt_mode="passthrough",
        jobs_database_url=database,
        data_dir=data_dir,  # shared: the input file one gateway stored, the other reads
        batch_poll_interval=0.1,
        batch_lease_seconds=LEASE,
        batch_lines_in_flight=8,  # more than the replica's capacity: the replica is the bound
        **settings,
    )


@contextmanager
def gateways(envs: list[dict[str, str]]) -> Iterator[list[Process]]:
    """The gateways, started side by side (a start is seconds of imports on a busy machine),
    and stopped at the end (also those that started when another did not)."""
    with ThreadPoolExecutor(len(envs)) as pool:
        starts = [pool.submit(start_gateway, env, 60.0) for env in envs]
    try:
        yield [start.result() for start in starts]
    finally:
        for start in starts:
            if start.exception() is None:
                start.result().stop()


def chat_lines(count: int, tag: str) -> bytes:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"{tag} {n}"}]}
              for n in range(count)]  # fmt: skip
    return requests(CHAT, bodies)


def committed(database: str, batch_id: str) -> dict[int, tuple[float, bytes]]:
    """Each committed line of the batch: when it was committed, and its result."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT line_no, finished_at, result FROM batch_lines"
            " WHERE batch_id = %s AND state IN ('succeeded', 'failed')",
            (batch_id,),
        ).fetchall()
    return {line: (at, bytes(result)) for line, at, result in rows}


def sent_lines(fake: FakeVLLMProcess, batch_id: str) -> dict[int, list[float]]:
    """When the replica received each line of the batch (a line's request id names it)."""
    sent: dict[int, list[float]] = defaultdict(list)
    prefix = f"{batch_id}-"
    for call in fake.requests():
        request_id = call["headers"].get("x-request-id", "")
        if request_id.startswith(prefix):
            sent[int(request_id.removeprefix(prefix))].append(call["received_at"])
    return sent


def test_the_survivor_finishes_the_batch_of_a_killed_gateway(
    database: str, replicas: list[FakeVLLMProcess], tmp_path: Path
) -> None:
    lines = 300
    for fake in replicas:
        fake.control(delay=0.1, capacity=4)
    data_dir = str(tmp_path)
    with gateways([fleet_env(database, data_dir, f) for f in replicas]) as (victim, survivor):
        sdk = client(survivor)
        batch = submit(client(victim), chat_lines(lines, "line"), CHAT)
        wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.request_counts.completed >= 80)
        victim.proc.kill()  # SIGKILL: its leases are left behind, nobody gives them back
        victim.proc.wait()
        killed_at = time.time()
        before = committed(database, batch.id)
        assert 80 <= len(before) < lines

        done = finish(sdk, batch, seconds=45)
        assert done.status == "completed", done
        assert done.request_counts.total == lines and done.request_counts.completed == lines
        output = by_custom_id(read_lines(sdk, done.output_file_id))  # each at most once
        assert sorted(output) == sorted(f"req-{n}" for n in range(lines))  # and each once
        assert done.error_file_id is None
        after = committed(database, batch.id)
        for line, result in before.items():
            assert after[line] == result  # what was committed before the kill stayed

        by_victim, by_survivor = (sent_lines(fake, batch.id) for fake in replicas)
        assert by_victim and by_survivor, "both gateways ran lines of the batch"
        unfinished = {n for n in by_victim if n not in before}
        assert unfinished, "the victim had lines in flight when it was killed"
        taken_over = unfinished & set(by_survivor)
        assert taken_over == unfinished, "the survivor ran every line the victim left"
        assert (
            min(min(by_survivor[n]) for n in taken_over) >= killed_at + LEASE * 2 / 3 - 0.5
        )  # leases renewed every third
        sent: dict[int, list[float]] = defaultdict(list)
        for record in (by_victim, by_survivor):
            for n, times in record.items():
                sent[n] += times
        assert sorted(sent) == list(range(lines))
        late = [n for n, times in sent.items() if max(times) > after[n][0]]
        assert late == [], f"lines sent again after their commit: {late[:10]}"
        resent = sum(len(times) > 1 for times in sent.values())
        assert resent <= 8, "only the lines in flight at the kill may run twice"


def batch_seconds(gateway: Process, lines: int, tag: str) -> float:
    """Wall time from submitting a batch (to `gateway`) to its completion."""
    sdk = client(gateway)
    started = time.monotonic()
    batch = submit(sdk, chat_lines(lines, tag), CHAT)
    done = wait(
        lambda: sdk.batches.retrieve(batch.id),
        lambda b: b.status in ("completed", "failed", "expired", "cancelled"),
        seconds=30,
    )
    elapsed = time.monotonic() - started
    assert done.status == "completed" and done.request_counts.completed == lines, done
    return elapsed


def test_two_gateways_finish_a_batch_faster_than_one(
    database: str, replicas: list[FakeVLLMProcess], tmp_path: Path
) -> None:
    lines = 64  # one replica: 4 answers at once, 0.5 s each = 8 lines/s, 8 s; two: 4 s
    for fake in replicas:
        fake.control(delay=0.5, capacity=4, record=False)
    data_dir = str(tmp_path)
    with gateways([fleet_env(database, data_dir, f) for f in replicas]) as (first, second):
        second.proc.send_signal(signal.SIGSTOP)  # paused: it claims nothing, costs no CPU
        try:
            alone = batch_seconds(first, lines, "alone")
        finally:
            second.proc.send_signal(signal.SIGCONT)
        httpx.get(f"{second.url}/health", timeout=10).raise_for_status()  # awake again
        together = batch_seconds(first, lines, "together")
        served = [fake.stats()["served"] for fake in replicas]
    assert served[1] >= lines / 4, f"the second gateway took little of the work: {served}"
    assert together < 0.8 * alone, f"two gateways {together:.1f} s, one {alone:.1f} s"
