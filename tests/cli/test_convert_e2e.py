"""`ocrflux convert` end to end: the command, the real gateway and the fake vLLM on loopback,
generated PDFs and images in nested temporary folders."""

from __future__ import annotations

import importlib.metadata
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli.corpus import Corpus, cli_env, convert, files_under
from tests.support import FakeVLLMProcess, Process, free_port

TABLE = "<table><tr><th>Year</th><th>Revenue</th></tr><tr><td>2023</td><td>24</td></tr></table>"


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    """in/ with two same-stem PDFs in different folders, a dotted name, an image, a text file
    and hidden entries."""
    corpus = Corpus(tmp_path / "in")
    corpus.pdf("a.pdf", "# Top\n\nFirst page.", TABLE)
    corpus.pdf("sub/a.pdf", "Sub a, one page.")
    corpus.pdf("sub/deeper/report.v2.pdf", "Report two.")
    corpus.image("sub/scan.png", "Scanned words.")
    (corpus.root / "notes.txt").write_text("not a document")
    corpus.pdf(".hidden/skip.pdf", "never sent")
    return corpus


EXPECTED_LAYOUT = {
    "a.pdf": "a/a.md",
    "sub/a.pdf": "sub/a/a.md",
    "sub/deeper/report.v2.pdf": "sub/deeper/report.v2/report.v2.md",
    "sub/scan.png": "sub/scan/scan.md",
}


def assert_clean(text: str) -> None:
    """Nothing a log file would show as garbage: no escape sequences, no carriage returns."""
    assert "\x1b" not in text and "\r" not in text, repr(text[:500])


def test_the_console_script_is_declared() -> None:
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert scripts["ocrflux"].value == "ocrflux.cli.main:main"


def test_a_nested_folder_converts_and_a_corrupt_pdf_is_a_named_failure(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.corrupt("sub/broken.pdf")
    corpus.feed(fake)
    result = convert("in", "-o", "out", "--url", ocrflux_gateway.url, "--jsonl",
                     "out/results.jsonl", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    out = tmp_path / "out"
    assert files_under(out) == sorted([*EXPECTED_LAYOUT.values(), "results.jsonl"])
    for source, target in EXPECTED_LAYOUT.items():
        assert (out / target).read_text(encoding="utf-8") == corpus.expected[source]
    # The toolkit's JSONL fields, one line per converted document.
    records = {r["orig_path"]: r for r in map(orjson.loads, (out / "results.jsonl").open("rb"))}
    assert set(records) == {f"in/{name}" for name in EXPECTED_LAYOUT}
    top = records["in/a.pdf"]
    assert list(top) == ["orig_path", "num_pages", "document_text", "page_texts", "fallback_pages"]
    assert top["num_pages"] == 2
    assert top["page_texts"] == {"0": "# Top\n\nFirst page.", "1": TABLE}
    assert top["document_text"] == corpus.expected["a.pdf"] and top["fallback_pages"] == []
    # The summary names the failure and why; progress went to stderr, plain.
    assert "4 converted, 1 failed" in result.stdout
    failure = next(line for line in result.stdout.splitlines() if "in/sub/broken.pdf" in line)
    assert "failed" in failure and "PDF could not be read" in failure
    assert "page 1/2" in result.stderr or "page 2/2" in result.stderr
    assert "done in/sub/deeper/report.v2.pdf (1 page)" in result.stderr
    assert_clean(result.stdout + result.stderr)


def test_a_second_run_skips_what_is_done_and_force_converts_again(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    args = ("in", "-o", "out", "--url", ocrflux_gateway.url)
    corpus.feed(fake)
    first = convert(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 converted, 0 failed" in first.stdout
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.md")}

    fake.reset()
    again = convert(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 converted, 4 skipped (already converted), 0 failed" in again.stdout
    assert fake.requests() == []
    assert {p: p.stat().st_mtime_ns for p in written} == written

    # Asking for the JSONL now converts again: the earlier run wrote none.
    corpus.feed(fake)
    with_jsonl = convert(*args, "--jsonl", "out/r.jsonl", cwd=tmp_path)
    assert "4 converted" in with_jsonl.stdout
    assert len((tmp_path / "out/r.jsonl").read_bytes().splitlines()) == 4

    corpus.feed(fake)
    forced = convert(*args, "--jsonl", "out/r.jsonl", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "4 converted, 0 failed" in forced.stdout
    assert len(fake.requests()) >= 5  # every page again
    # Replaced, not appended.
    assert len((tmp_path / "out/r.jsonl").read_bytes().splitlines()) == 4


def test_pages_table_format_and_merge_options_reach_the_api(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    corpus = Corpus(tmp_path / "in")
    corpus.pdf("t.pdf", "Intro.", TABLE, "Last page.")
    corpus.feed(fake)
    options = ("--pages", "1-2", "--table-format", "markdown", "--skip-cross-page-merge")
    result = convert("in/t.pdf", "-o", "out", "--url", ocrflux_gateway.url, *options, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (tmp_path / "out/t/t.md").read_text()
    assert text == "| Year | Revenue |\n|---|---|\n| 2023 | 24 |\n\nLast page."
    assert len(fake.requests()) == 2  # two pages, no merge calls


def test_a_gateway_with_keys_refuses_without_one_and_converts_with_the_env_key(
    make_gateway: Any, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    gateway = make_gateway(api_keys="s3cret")
    corpus.feed(fake)
    refused = convert("in", "-o", "out", "--url", gateway.url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "You didn't provide an API key" in refused.stdout
    assert "OCRFLUX_API_KEY" in refused.stdout
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == []
    assert "s3cret" not in refused.stdout + refused.stderr

    accepted = convert("in", "-o", "out", "--url", gateway.url, cwd=tmp_path,
                       env=cli_env(OCRFLUX_API_KEY="s3cret"))  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert files_under(tmp_path / "out") == sorted(EXPECTED_LAYOUT.values())


def test_an_unreachable_gateway_stops_the_run_at_once(corpus: Corpus, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = convert("in", "-o", "out", "--url", url, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot reach the gateway at {url}" in result.stdout
    assert "0 converted, 0 failed, 4 not converted" in result.stdout
    assert not (tmp_path / "out").exists()


def test_the_v1_url_an_openai_client_is_given_works_too(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.feed(fake)
    result = convert("in", "-o", "out", "--url", f"{ocrflux_gateway.url}/v1/", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert files_under(tmp_path / "out") == sorted(EXPECTED_LAYOUT.values())


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["missing.pdf"], "no such file or folder: missing.pdf"),
        ([], "Missing argument"),
        (["missing.pdf", "--pages", "abc"], "Invalid value for '--pages': pages: 'abc' is not"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, arguments: list[str], says: str) -> None:
    result = convert(*arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert says in result.stderr


def test_ctrl_c_leaves_whole_files_only(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    corpus = Corpus(tmp_path / "in")
    corpus.pdf("fast.pdf", "Quick page.")
    slow = corpus.pdf("slow.pdf", "Slow page.")
    corpus.feed(fake)
    slow_key = next(key for key, answers in corpus.answers.items() if "Slow" in answers[0])
    fake.control(page_delays={slow_key: 30.0})
    # A terminal's foreground process gets SIGINT's default action (a background job started
    # by a non-interactive shell inherits "ignore").
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", "convert", "in", "-o", "out", "--url",
         ocrflux_gateway.url, "--jsonl", "out/r.jsonl"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "out/fast/fast.md").exists() or not any(
            _size(r) == slow_key for r in fake.requests()
        ):
            assert time.monotonic() < deadline, "the slow page never reached the fake"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stdout and "1 converted, 0 failed, 1 not converted" in stdout
    assert files_under(tmp_path / "out") == ["fast/fast.md", "r.jsonl"]  # no temporary left
    lines = (tmp_path / "out/r.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["orig_path"] for line in lines] == ["in/fast.pdf"]
    assert slow.exists()


def _size(request: dict[str, Any]) -> str:
    images = request.get("images") or [{}]
    return f"{images[0].get('width')}x{images[0].get('height')}"


def test_a_terminal_gets_progress_bars(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, corpus: Corpus, tmp_path: Path
) -> None:
    corpus.feed(fake)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", "convert", "in", "-o", "out", "--url",
         ocrflux_gateway.url],
        cwd=tmp_path, env=cli_env(TERM="xterm-256color"), stdin=follower, stdout=follower,
        stderr=follower,
    )  # fmt: skip
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
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
    text = output.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "\x1b[" in text  # drawn with cursor movement and colour
    assert "documents" in text and "4/4" in text
    assert "4 converted, 0 failed" in text
