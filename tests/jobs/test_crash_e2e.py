"""A gateway killed with SIGKILL mid-batch: nothing finished is lost, nothing is answered
twice, and the batch completes after a restart."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict

from tests.jobs.batch_support import (
    CHAT,
    by_custom_id,
    client,
    finish,
    jobs_database,
    read_lines,
    requests,
    submit,
    wait,
)
from tests.support import FakeVLLMProcess, free_port, gateway_env, start_gateway

LINES = 300


def committed(path: str, batch_id: str) -> dict[int, tuple[float, bytes]]:
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute(
            "SELECT line_no, finished_at, result FROM batch_lines"
            " WHERE batch_id = ? AND state IN ('succeeded', 'failed')",
            (batch_id,),
        ).fetchall()
    return {line: (at, result) for line, at, result in rows}


def test_a_killed_gateway_loses_no_finished_line_and_repeats_none(fake: FakeVLLMProcess) -> None:
    fake.control(delay=0.05, capacity=4)
    env = gateway_env(
        fake.port,
        prompt_mode="passthrough",
        batch_poll_interval=0.1,
        batch_lease_seconds=3,
        batch_lines_in_flight=8,
    )
    first = start_gateway(env)
    sdk = client(first)
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"line {n}"}]}
              for n in range(LINES)]  # fmt: skip
    batch = submit(sdk, requests(CHAT, bodies), CHAT)
    wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.request_counts.completed >= 100)
    first.proc.kill()  # SIGKILL: no shutdown, leases left behind
    first.proc.wait()
    database = str(jobs_database(first))
    before = committed(database, batch.id)
    assert 100 <= len(before) < LINES

    restarted = start_gateway({**env, "API_PORT": str(free_port())})  # same DATA_DIR
    try:
        again = client(restarted)
        done = finish(again, batch, seconds=120)
        assert done.status == "completed", done
        assert done.request_counts.total == LINES and done.request_counts.completed == LINES
        output = by_custom_id(read_lines(again, done.output_file_id))
        assert sorted(output) == sorted(f"req-{n}" for n in range(LINES))  # each exactly once
        after = committed(database, batch.id)
        for line, result in before.items():
            assert after[line] == result  # what was committed before the kill stayed as it was
        # The fake's record: no line was sent again once it had been committed.
        sent: dict[int, list[float]] = defaultdict(list)
        prefix = f"{batch.id}-"
        for call in fake.requests():
            request_id = call["headers"].get("x-request-id", "")
            if request_id.startswith(prefix):
                sent[int(request_id.removeprefix(prefix))].append(call["received_at"])
        assert sorted(sent) == list(range(LINES))
        late = [n for n, times in sent.items() if max(times) > after[n][0]]
        assert late == [], f"lines sent again after their commit: {late[:10]}"
        resent = sum(len(times) > 1 for times in sent.values())
        assert resent <= 8, "only lines in flight at the kill may run twice"
    finally:
        restarted.stop()
    assert time.time() - done.created_at < 120
