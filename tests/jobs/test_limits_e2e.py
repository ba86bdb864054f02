"""The batch limits: bytes per file (MAX_FILE_BYTES) and requests per batch (BATCH_MAX_LINES)."""

from __future__ import annotations

import io
from pathlib import Path

import openai
import pytest

from tests.jobs.batch_support import CHAT, client, finish, requests, submit
from tests.support import FakeVLLMProcess, gateway_env, start_gateway


def test_a_file_over_max_file_bytes_and_a_batch_over_batch_max_lines_are_refused(
    fake: FakeVLLMProcess,
) -> None:
    gateway = start_gateway(
        gateway_env(fake.port, max_file_bytes=2048, batch_max_lines=3, batch_poll_interval=0.1)
    )
    try:
        sdk = client(gateway)
        big = requests(CHAT, [{"model": "m", "messages": [], "user": "x" * 3000}])
        assert len(big) > 2048
        with pytest.raises(openai.APIStatusError) as refused:
            sdk.files.create(file=("big.jsonl", io.BytesIO(big)), purpose="batch")
        assert refused.value.status_code == 413
        assert "the limit for purpose 'batch' is 2,048" in str(refused.value)
        assert sdk.files.list().data == []  # nothing kept of it
        assert list((Path(gateway.env["DATA_DIR"]) / "tmp").iterdir()) == []
        four = requests(CHAT, [{"model": "m", "messages": []}] * 4)
        done = finish(sdk, submit(sdk, four, CHAT))
        assert done.status == "failed" and done.request_counts.total == 0
        assert done.errors is not None
        (error,) = done.errors.data or []
        assert (error.code, error.line) == ("too_many_requests", 4)
        assert error.message == "the batch has more than 3 requests (BATCH_MAX_LINES)"
        three = finish(sdk, submit(sdk, requests(CHAT, [{"model": "m", "messages": []}] * 3), CHAT))
        assert three.status == "completed" and three.request_counts.total == 3
    finally:
        gateway.stop()
