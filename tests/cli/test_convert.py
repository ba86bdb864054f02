"""A `convert` run in-process against scripted gateways (httpx.MockTransport): answers a real
gateway never gives, and output paths that would leave OUTDIR."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from ocrflux.cli.client import PageProgress
from ocrflux.cli.convert import Conversion, ConvertConfig
from ocrflux.cli.inputs import Document, find_documents

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.converted: list[str] = []

    def begin(self, total: int, skipped: int) -> None:
        pass

    def started(self, document: Document) -> None:
        pass

    def progress(self, document: Document, page: PageProgress | None) -> None:
        pass

    def finished(self, document: Document, pages: int, fallback_pages: list[int]) -> None:
        self.converted.append(document.orig_path)

    def failed(self, document: Document, reason: str) -> None:
        self.failures.append((document.orig_path, reason))

    def end(self) -> None:
        pass


def raw_sse(*events: tuple[str, bytes]) -> httpx.Response:
    body = b"".join(
        b"event: " + name.encode() + b"\ndata: " + data + b"\n\n" for name, data in events
    )
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def gateway(answer: Callable[[], httpx.Response]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        return answer()

    return httpx.MockTransport(handle)


def run(documents: list[Document], outdir: Path, transport: httpx.MockTransport) -> Recorder:
    recorder = Recorder()
    conversion = Conversion(
        documents,
        ConvertConfig(url="http://gateway", outdir=outdir),
        recorder,  # type: ignore[arg-type]
        transport=transport,
    )
    asyncio.run(conversion.run())
    return recorder


GOOD_PAGE = orjson.dumps({"index": 0, "done": 1, "total": 1, "fallback": False})
GOOD_RESULT = orjson.dumps({"document_text": "x", "pages": [{}], "num_pages": 1})


@pytest.mark.parametrize(("events", "says"), [
    ([("page", b"[1, 2]"), ("result", GOOD_RESULT)], "a page event that is not valid"),
    ([("page", b'{"index": "x", "done": 1, "total": 1}')], "a page event that is not valid"),
    ([("page", b'{"index": 0, "done": 1.5, "total": 2}')], "a page event that is not valid"),
    ([("page", b'{"index": 0, "done": -1, "total": 2}')], "a page event that is not valid"),
    ([("page", b'{"index": 0, "done": 1, "total": true}')], "a page event that is not valid"),
    ([("page", GOOD_PAGE), ("result", b'{"document_text": "x", "pages": 5}')],
     "the gateway's answer is not valid: pages"),
    ([("result", b'{"document_text": "x", "fallback_pages": ["1"]}')],
     "the gateway's answer is not valid: fallback_pages"),
    ([("result", b'{"document_text": "x", "fallback_pages": 3}')],
     "the gateway's answer is not valid: fallback_pages"),
    ([("result", b'{"document_text": "x", "num_pages": "2"}')],
     "the gateway's answer is not valid: num_pages"),
    ([("result", b'{"document_text": "x", "page_texts": [1]}')],
     "the gateway's answer is not valid: page_texts"),
    ([("result", b'{"document_text": 7}')], "the gateway's answer is not valid: document_text"),
    ([("result", b'{"pages": []}')], "the gateway's answer is not valid: document_text"),
    ([("result", b"[1]")], "the gateway's answer is not valid"),
    ([("result", b'"text"')], "the gateway's answer is not valid"),
    ([("merge", b"[]"), ("result", b"5")], "the gateway's answer is not valid"),
    ([("error", b"[1]")], "[1]"),
    ([("error", b'{"error": "flat"}')], '{"error":"flat"}'),
])  # fmt: skip
def test_a_malformed_stream_fails_the_document_with_a_message(
    tmp_path: Path, events: list[tuple[str, bytes]], says: str
) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.7\n")
    documents = find_documents([str(tmp_path / "a.pdf"), str(tmp_path / "b.pdf")])
    recorder = run(documents, tmp_path / "out", gateway(lambda: raw_sse(*events)))
    failed = sorted(path for path, _ in recorder.failures)
    assert failed == [str(tmp_path / "a.pdf"), str(tmp_path / "b.pdf")]
    assert all(says in reason for _, reason in recorder.failures), recorder.failures
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("body", [
    b'{"document_text": "x", "pages": 5}',
    b'{"document_text": "x", "fallback_pages": [null]}',
    b"[1]",
])  # fmt: skip
def test_a_malformed_json_answer_fails_the_document(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    answer = httpx.Response(200, content=body, headers={"content-type": "application/json"})
    recorder = run(find_documents([str(tmp_path / "a.pdf")]), tmp_path / "out",
                   gateway(lambda: answer))  # fmt: skip
    assert len(recorder.failures) == 1
    assert "the gateway's answer is not" in recorder.failures[0][1]


def test_a_good_stream_still_converts(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    events = [("page", GOOD_PAGE), ("merge", b'{"pairs": 0}'), ("result", GOOD_RESULT)]
    recorder = run(find_documents([str(tmp_path / "a.pdf")]), tmp_path / "out",
                   gateway(lambda: raw_sse(*events)))  # fmt: skip
    assert recorder.failures == []
    assert recorder.converted == [str(tmp_path / "a.pdf")]
    assert (tmp_path / "out/a/a.md").read_text() == "x"


def test_a_glob_through_dot_dot_never_writes_outside_outdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("in/a.pdf", "in/sub/x/b.pdf", "in/sub/x/deeper/c.pdf"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"%PDF-1.7\n")
    documents = find_documents(["in/sub/**/../../*.pdf", "in/sub/x/*.pdf"])
    answer = raw_sse(("result", GOOD_RESULT))
    recorder = run(documents, Path("out"), gateway(lambda: answer))
    assert recorder.failures == [
        ("in/sub/x/../../a.pdf", "its Markdown would be written outside the output folder "
         f"(to {tmp_path / 'a' / 'a.md'}); give the folder that holds it instead"),
    ]  # fmt: skip
    assert recorder.converted == ["in/sub/x/b.pdf"]
    assert sorted(p.as_posix() for p in Path().rglob("*.md")) == ["out/b/b.md"]


def test_a_link_inside_outdir_that_leads_out_of_it_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").symlink_to(tmp_path / "elsewhere")
    answer = raw_sse(("result", GOOD_RESULT))
    recorder = run(find_documents([str(tmp_path / "a.pdf")]), tmp_path / "out",
                   gateway(lambda: answer))  # fmt: skip
    assert [reason.split(" (")[0] for _, reason in recorder.failures] == [
        "its Markdown would be written outside the output folder"
    ]
    assert list((tmp_path / "elsewhere").iterdir()) == []
