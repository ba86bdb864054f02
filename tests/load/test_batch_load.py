"""Load suite (e): interactive chat beside a running 2,000-line batch, and alone.

The gateway has 8 upstream slots in front of two capacity-bound fake replicas (4 answers
at once each, 0.1 s +-50%), and room for 4 waiting requests. Interactive clients are
measured alone, then while a 2,000-line chat batch runs on the same gateway: batch lines
take only the slots interactive requests leave free, so no interactive request is refused
(429) because of the batch, and their p99 stays near its value alone (a batch call holding
a replica's capacity finishes within one service time). Run with `python -m pytest -m load`.
"""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from tests.jobs.batch_support import CHAT, client, requests, submit, wait
from tests.load.client import closed_loop
from tests.load.test_load import TEXT, Sampler, gateway, metric, replicas, row

pytestmark = pytest.mark.load

LINES = 2000
SLOTS, QUEUE = 8, 4


def completed(sdk: openai.OpenAI, batch_id: str) -> tuple[str, int]:
    """The batch's status and its lines done so far."""
    batch = sdk.batches.retrieve(batch_id)
    return batch.status, batch.request_counts.completed if batch.request_counts else 0


def test_e_a_running_batch_does_not_hurt_interactive_chat() -> None:
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"line {n}"}]}
              for n in range(LINES)]  # fmt: skip
    with (
        replicas(2, delay=0.1, delay_jitter=0.5, capacity=4) as fakes,
        gateway(
            fakes,
            prompt_mode="passthrough",
            max_concurrent_requests=SLOTS,
            max_queue=QUEUE,
            queue_timeout=30,
            batch_poll_interval=0.2,
        ) as gw,
    ):
        url, clients = gw.url + CHAT, 6  # fewer than the slots: the batch gets what is left
        alone = asyncio.run(closed_loop(url, TEXT, clients=clients, seconds=6))

        sdk = client(gw)
        batch = submit(sdk, requests(CHAT, bodies), CHAT)
        wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.request_counts.completed >= 50)
        _, started_with = completed(sdk, batch.id)
        started = time.monotonic()
        background = Sampler(lambda: metric(gw, "ocrflux_background_in_flight"), every=0.2)
        with background:
            beside = asyncio.run(closed_loop(url, TEXT, clients=clients, seconds=6))
        window = time.monotonic() - started
        status, done = completed(sdk, batch.id)
        done_during = done - started_with
        sdk.batches.cancel(batch.id)  # the rest is not measured: its partial output is kept
        wait(lambda: sdk.batches.retrieve(batch.id), seconds=30)

    p99_alone, p99_beside = alone.latency_ms(0.99), beside.latency_ms(0.99)
    peak_background = max((v for _, v in background.values), default=float("nan"))
    row(
        "e: interactive chat alone",
        alone,
        f"{clients} clients; 2 replicas x 4 slots, 0.1 s +-50% an answer; {SLOTS} slots, "
        f"queue {QUEUE}",
    )
    row(
        f"e: the same beside a {LINES:,}-line batch",
        beside,
        f"p99 {p99_beside / p99_alone:.2f}x alone; the batch ran {done_during} lines "
        f"({done_during / window:.0f}/s) during the window, up to {peak_background:.0f} "
        f"batch calls in flight; still {status} with {done}/{LINES} done",
    )
    assert alone.statuses() == {200: len(alone.answers)}
    assert beside.statuses() == {200: len(beside.answers)}, beside.statuses()  # no 429
    assert status == "in_progress" and done < LINES, "the batch ended before the window did"
    assert done_during > 0 and peak_background >= 1, "the batch did not run beside the chat"
    assert len(beside.answers) >= 0.5 * len(alone.answers)
    assert p99_beside <= 2 * p99_alone, (p99_alone, p99_beside)
