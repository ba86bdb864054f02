"""Helpers for the batch tests: input lines, waiting for a batch, reading output files."""

from __future__ import annotations

import base64
import io
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import openai
import orjson

from tests.support import Process

CHAT, OCR = "/v1/chat/completions", "/v1/ocr"
ENDED = ("completed", "failed", "expired", "cancelled")


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat_body(image_url: str, **extra: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": image_url}}]
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **extra}


def ocr_body(document_url: str, **extra: Any) -> dict[str, Any]:
    document = {"type": "document_url", "document_url": document_url}
    return {"model": "mistral-ocr-latest", "document": document, **extra}


def jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def requests(endpoint: str, bodies: Iterable[dict[str, Any]], prefix: str = "req") -> bytes:
    """OpenAI's input lines: custom_id, method, url, body."""
    return jsonl(
        {"custom_id": f"{prefix}-{n}", "method": "POST", "url": endpoint, "body": body}
        for n, body in enumerate(bodies)
    )


def client(gateway: Process, key: str = "any-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def submit(sdk: openai.OpenAI, data: bytes, endpoint: str, **extra: Any) -> Any:
    upload = sdk.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    return sdk.batches.create(
        input_file_id=upload.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **extra,
    )


def wait(
    fetch: Callable[[], Any],
    done: Callable[[Any], bool] = lambda b: b.status in ENDED,
    seconds: float = 60,
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        current = fetch()
        if done(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {seconds} s: {current}")
        time.sleep(0.1)


def finish(sdk: openai.OpenAI, batch: Any, seconds: float = 60) -> Any:
    """The batch once it has ended."""
    return wait(lambda: sdk.batches.retrieve(batch.id), seconds=seconds)


def read_lines(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [orjson.loads(line) for line in sdk.files.content(file_id).content.splitlines()]


def by_custom_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {line["custom_id"]: line for line in lines}
    assert len(found) == len(lines), "a custom_id appears twice"
    return found


def jobs_database(gateway: Process) -> Path:
    return Path(gateway.env["DATA_DIR"]) / "jobs.sqlite3"


def sql(gateway: Process, statement: str, *args: Any) -> None:
    """Change the gateway's jobs database behind its back (time travel for expiry, retention)."""
    with sqlite3.connect(jobs_database(gateway), timeout=30) as conn:
        conn.execute(statement, args)
