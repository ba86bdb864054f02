"""`ocrflux convert --batch` and `ocrflux batch ...` end to end: the commands, a real gateway
running batches, the fake vLLM, generated documents in nested folders."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.cli.corpus import Corpus, cli_env, convert, files_under
from tests.support import FakeVLLMProcess, Process, gateway_env, start_gateway

EXPECTED = {"a.pdf": "a/a.md", "sub/a.pdf": "sub/a/a.md", "sub/scan.png": "sub/scan/scan.md"}
RESUME = re.compile(r"run: (ocrflux batch wait .+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def gateway(fake_server: FakeVLLMProcess) -> Iterator[Process]:
    started = start_gateway(
        gateway_env(fake_server.port, prompt_mode="ocrflux", batch_poll_interval=0.05)
    )
    yield started
    started.stop()


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    corpus = Corpus(tmp_path / "in")
    corpus.pdf("a.pdf", "# Top\n\nFirst page.", "Second page.")
    corpus.pdf("sub/a.pdf", "Sub a, one page.")
    corpus.image("sub/scan.png", "Scanned words.")
    return corpus


def ocrflux(*arguments: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", *arguments],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def contents(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in files_under(root)}


def jsonl_records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["orig_path"]: r for r in map(orjson.loads, path.read_bytes().splitlines())}


def test_a_batch_writes_what_the_synchronous_convert_writes(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.feed(fake)
    common = ("in", "--url", gateway.url, "--poll-interval", "0.1")
    batch = convert(*common, "-o", "batch", "--jsonl", "batch.jsonl", "--batch", cwd=tmp_path)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    synchronous = convert(*common, "-o", "sync", "--jsonl", "sync.jsonl", cwd=tmp_path)
    assert synchronous.returncode == 0, synchronous.stdout + synchronous.stderr

    assert files_under(tmp_path / "batch") == sorted(EXPECTED.values())
    assert contents(tmp_path / "batch") == contents(tmp_path / "sync")
    for source, target in EXPECTED.items():
        assert (tmp_path / "batch" / target).read_text() == corpus.expected[source]
    assert jsonl_records(tmp_path / "batch.jsonl") == jsonl_records(tmp_path / "sync.jsonl")
    assert "3 converted, 0 failed" in batch.stdout
    assert "ocrflux batch wait" not in batch.stdout  # nothing to resume
    assert "uploading 3 documents" in batch.stderr
    assert re.search(r"batch batch_\w+: completed, 3/3 done", batch.stderr), batch.stderr
    # The uploaded documents are deleted once the batch has ended; its lines and results stay.
    files = httpx.get(f"{gateway.url}/v1/files", timeout=10).json()["data"]
    assert sorted(f["purpose"] for f in files) == ["batch", "batch_output"]

    # Done documents are skipped, as by the synchronous convert.
    fake.reset()
    again = convert(*common, "-o", "batch", "--batch", cwd=tmp_path)
    assert again.returncode == 0 and "0 converted, 3 skipped" in again.stdout
    assert fake.requests() == []


def test_a_document_the_gateway_cannot_read_is_a_named_failure(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.corrupt("sub/broken.pdf")
    corpus.feed(fake)
    result = convert("in", "-o", "out", "--url", gateway.url, "--batch", "--poll-interval",
                     "0.1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert files_under(tmp_path / "out") == sorted(EXPECTED.values())
    assert "3 converted, 1 failed" in result.stdout
    failure = next(line for line in result.stdout.splitlines() if "in/sub/broken.pdf" in line)
    assert "PDF could not be read" in failure and "HTTP 400" in failure


def start_and_interrupt(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path, delay: float = 4.0
) -> tuple[str, str]:
    """`convert --batch` with one slow page, interrupted once that page reached the fake:
    (the batch id, the resume command)."""
    corpus.feed(fake)
    slow_key = next(key for key, answers in corpus.answers.items() if "Sub a" in answers[0])
    fake.control(page_delays={slow_key: delay})
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", "convert", "in", "-o", "out", "--url",
         gateway.url, "--batch", "--poll-interval", "0.1", "--jsonl", "out/r.jsonl"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not any(_size(r) == slow_key for r in fake.requests()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the slow page never reached the fake"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted; the batch goes on running on the gateway" in stdout
    found = RESUME.search(stdout)
    assert found is not None, stdout
    command = found.group(1)
    batch_id = shlex.split(command)[3]
    expected = f"ocrflux batch wait {batch_id} -o out --url {gateway.url} --jsonl out/r.jsonl"
    assert command == expected
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == []
    return batch_id, command


def _size(request: dict[str, Any]) -> str:
    images = request.get("images") or [{}]
    return f"{images[0].get('width')}x{images[0].get('height')}"


def test_ctrl_c_leaves_the_batch_running_and_batch_wait_finishes_it(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    _, command = start_and_interrupt(gateway, fake, corpus, tmp_path)
    resumed = ocrflux(*shlex.split(command)[1:], "--poll-interval", "0.1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 converted, 0 failed" in resumed.stdout
    assert files_under(tmp_path / "out") == sorted([*EXPECTED.values(), "r.jsonl"])
    for source, target in EXPECTED.items():
        assert (tmp_path / "out" / target).read_text() == corpus.expected[source]
    # The inputs' names came back with the batch (its input file), not just the custom_ids.
    assert set(jsonl_records(tmp_path / "out/r.jsonl")) == {f"in/{name}" for name in EXPECTED}


def test_status_list_and_cancel(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    batch_id, _ = start_and_interrupt(gateway, fake, corpus, tmp_path, delay=20.0)
    args = ("--url", gateway.url)
    status = ocrflux("batch", "status", batch_id, *args, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"batch: {batch_id}\n" in status.stdout
    assert "status: in_progress\n" in status.stdout and "endpoint: /v1/ocr\n" in status.stdout
    assert re.search(r"requests: \d/3 done, 0 failed", status.stdout), status.stdout
    assert "metadata created_by: ocrflux convert --batch" in status.stdout

    listed = ocrflux("batch", "list", *args, cwd=tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = next(line for line in listed.stdout.splitlines() if batch_id in line)
    assert "in_progress" in row and "/v1/ocr" in row

    cancelled = ocrflux("batch", "cancel", batch_id, *args, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert re.search(r"status: (cancelling|cancelled)\n", cancelled.stdout), cancelled.stdout

    # Waiting for a cancelled batch writes what it finished and says how it ended.
    waited = ocrflux("batch", "wait", batch_id, "-o", "out", *args, "--poll-interval", "0.1",
                     cwd=tmp_path)  # fmt: skip
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "stopped: the batch ended cancelled" in waited.stdout
    assert {"a/a.md", "sub/scan/scan.md"} <= set(files_under(tmp_path / "out"))
    assert "ocrflux batch wait" not in waited.stdout


def test_unknown_and_malformed_ids(gateway: Process, fake: FakeVLLMProcess, tmp_path: Path) -> None:
    unknown = ocrflux("batch", "status", "batch_nope", "--url", gateway.url, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "error:" in unknown.stderr and "HTTP 404" in unknown.stderr
    waited = ocrflux("batch", "wait", "batch_nope", "-o", "out", "--url", gateway.url,
                     cwd=tmp_path)  # fmt: skip
    assert waited.returncode == 1 and "HTTP 404" in waited.stdout
    assert "ocrflux batch wait" not in waited.stdout
    bad = ocrflux("batch", "status", "../files/x", "--url", gateway.url, cwd=tmp_path)
    assert bad.returncode == 2 and "is not a batch id" in bad.stderr


def run_in_terminal(arguments: list[str], cwd: Path, seconds: float = 60) -> tuple[int, str]:
    """The command on a pseudo-terminal: (exit status, everything it drew)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", *arguments], cwd=cwd,
        env=cli_env(TERM="xterm-256color"), stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    output = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return proc.returncode, output.decode("utf-8", "replace")


def test_a_terminal_gets_upload_and_batch_bars(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.feed(fake)
    status, text = run_in_terminal(
        ["convert", "in", "-o", "out", "--url", gateway.url, "--batch", "--poll-interval", "0.1"],
        tmp_path,
    )
    assert status == 0, text
    assert "\x1b[" in text  # drawn with cursor movement and colour
    assert "uploading" in text and re.search(r"batch batch_\w+ completed", text), text
    assert "3/3" in text and "3 converted, 0 failed" in text
    assert files_under(tmp_path / "out") == sorted(EXPECTED.values())


def test_pages_table_format_and_merge_options_reach_every_line(
    gateway: Process, fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    table = "<table><tr><th>Year</th><th>Revenue</th></tr><tr><td>2023</td><td>24</td></tr></table>"
    corpus = Corpus(tmp_path / "in")
    corpus.pdf("t.pdf", "Intro.", table, "Last page.")
    corpus.feed(fake)
    options = ("--pages", "1-2", "--table-format", "markdown", "--skip-cross-page-merge")
    result = convert("in/t.pdf", "-o", "out", "--url", gateway.url, "--batch", "--poll-interval",
                     "0.1", *options, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = (tmp_path / "out/t/t.md").read_text()
    assert text == "| Year | Revenue |\n|---|---|\n| 2023 | 24 |\n\nLast page."
    assert len(fake.requests()) == 2  # two pages, no merge calls


def test_a_gateway_with_keys_refuses_without_one_and_converts_with_the_env_key(
    make_gateway: Any, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    gateway = make_gateway(api_keys="s3cret", batch_poll_interval=0.05)
    corpus.feed(fake)
    args = ("in", "-o", "out", "--url", gateway.url, "--batch", "--poll-interval", "0.1")
    refused = convert(*args, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "You didn't provide an API key" in refused.stdout and "OCRFLUX_API_KEY" in refused.stdout
    assert "ocrflux batch wait" not in refused.stdout  # nothing was submitted
    accepted = convert(*args, cwd=tmp_path, env=cli_env(OCRFLUX_API_KEY="s3cret"))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert files_under(tmp_path / "out") == sorted(EXPECTED.values())
    assert "s3cret" not in accepted.stdout + accepted.stderr + refused.stdout + refused.stderr
    listed = ocrflux("batch", "list", "--url", gateway.url, cwd=tmp_path)
    assert listed.returncode == 1 and "You didn't provide an API key" in listed.stderr


def test_batch_list_pages_with_after(
    gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.feed(fake)
    for n in range(2):
        done = convert("in", "-o", f"out{n}", "--url", gateway.url, "--batch", "--poll-interval",
                       "0.1", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    first = ocrflux("batch", "list", "--limit", "1", "--url", gateway.url, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    more = re.search(r"more: ocrflux batch list --after (\S+)", first.stdout)
    assert more is not None, first.stdout
    second = ocrflux("batch", "list", "--limit", "1", "--after", more.group(1), "--url",
                     gateway.url, cwd=tmp_path)  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    assert more.group(1) in first.stdout and more.group(1) not in second.stdout
    assert re.search(r"batch_\w+", second.stdout), second.stdout
