"""Batch answers the test gateway does not give on demand: malformed batches, result lines
that are not results, custom_ids that point out of OUTDIR (the end-to-end tests cover the rest)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

from ocrflux.cli.batch_client import BatchClient
from ocrflux.cli.batch_commands import run_batch
from ocrflux.cli.batch_progress import LineBatchReporter
from ocrflux.cli.batch_run import BatchRun
from ocrflux.cli.client import GatewayError, OCROptions
from ocrflux.cli.convert import ConvertConfig
from ocrflux.cli.inputs import find_documents

Handler = Callable[[httpx.Request], httpx.Response]

BATCH = {
    "id": "batch_1",
    "object": "batch",
    "endpoint": "/v1/ocr",
    "status": "completed",
    "input_file_id": "file-in",
    "output_file_id": "file-out",
    "error_file_id": None,
    "created_at": 1_800_000_000,
    "request_counts": {"total": 2, "completed": 2, "failed": 0},
}
ANSWER = {"document_text": "# Hello", "pages": [{}], "num_pages": 1, "page_texts": {"0": "x"}}


def result(custom_id: Any, body: Any = ANSWER, status: int = 200) -> dict[str, Any]:
    return {"id": "r", "custom_id": custom_id, "error": None,
            "response": {"status_code": status, "request_id": "q", "body": body}}  # fmt: skip


def lines(*items: Any) -> bytes:
    return b"".join((i if isinstance(i, bytes) else orjson.dumps(i)) + b"\n" for i in items)


def gateway(batch: Any, output: bytes = b"", inputs: bytes = b"") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/batches/batch_1":
            return httpx.Response(200, json=batch) if not isinstance(batch, bytes) else (
                httpx.Response(200, content=batch))  # fmt: skip
        if path == "/v1/files/file-out/content":
            return httpx.Response(200, content=output)
        if path == "/v1/files/file-in/content":
            return httpx.Response(200, content=inputs)
        return httpx.Response(404, json={"error": {"message": "no"}})

    return handler


PROGRESS = io.StringIO()


async def wait(tmp_path: Path, handler: Handler) -> BatchRun:
    """`batch wait batch_1` against `handler`; its progress lines in PROGRESS."""
    config = ConvertConfig(url="http://gateway", outdir=tmp_path / "out", poll_interval=0.01)
    PROGRESS.seek(0)
    PROGRESS.truncate()
    console = Console(file=PROGRESS, width=200)
    run = BatchRun(config, LineBatchReporter(console), transport=httpx.MockTransport(handler))
    try:
        await run.wait("batch_1")
    finally:
        await run.aclose()
    return run


def written(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md"))


@pytest.mark.parametrize(
    ("batch", "says"),
    [
        (b"<html>proxy</html>", "is not JSON"),
        ([1, 2], "the gateway's batch is not valid"),
        ({**BATCH, "status": "exploded"}, "status: Input should be 'validating'"),
        ({**BATCH, "request_counts": {"total": -1}}, "request_counts.total"),
        ({**BATCH, "request_counts": {"total": "3"}}, "request_counts.total"),
        ({**BATCH, "output_file_id": "../../v1/batches"}, "output_file_id: String should match"),
        ({**BATCH, "id": 7}, "id: Input should be a valid string"),
        ({**BATCH, "metadata": {"a": 1}}, "metadata.a"),
        ({**BATCH, "endpoint": "/v1/chat/completions"}, "runs /v1/chat/completions, not /v1/ocr"),
    ],
)
async def test_a_malformed_batch_is_a_message(tmp_path: Path, batch: Any, says: str) -> None:
    run = await wait(tmp_path, gateway(batch))
    assert run.report.stopped is not None and says in run.report.stopped, run.report.stopped
    assert run.batch_id is None and not (tmp_path / "out").exists()


async def test_results_that_are_not_results_are_named_and_the_rest_written(
    tmp_path: Path,
) -> None:
    output = lines(
        result("good"),
        b"not json",
        {"custom_id": 5},
        result("../escape"),
        result("/etc/evil"),
        result("nobody", body={"document_text": 12}),
        result("refused", body={"error": {"message": "\x1b[2Jthe PDF is bad"}}, status=400),
        result("good", body={"document_text": "second copy"}),
    )
    inputs = lines({"custom_id": "good", "orig_path": "in/good.pdf"}, b"{broken", [1])
    run = await wait(tmp_path, gateway(BATCH, output, inputs))
    out = tmp_path / "out"
    assert written(tmp_path) == ["out/good/good.md"]
    assert (out / "good/good.md").read_text() == "# Hello"  # the first answer for an id counts
    assert [(d.orig_path, pages) for d, pages in run.report.converted] == [("in/good.pdf", 1)]
    failed = {d.orig_path: reason for d, reason in run.report.failed}
    assert failed == {
        "nobody": "the gateway's answer is not valid: document_text: Input should be a valid "
        "string",
        "refused": "\x1b[2Jthe PDF is bad (HTTP 400)",  # escaped where printed (report, progress)
    }
    assert run.report.stopped == (
        "4 result lines of the gateway could not be used, the first: a line of the batch's "
        "results is not JSON"
    )
    progress = PROGRESS.getvalue()
    assert "warning: custom_id '../escape' names no output file" in progress
    assert "warning: custom_id '/etc/evil' names no output file: it is an absolute path" in progress
    assert "warning: the gateway's result line is not valid: custom_id: Input should be" in progress
    assert "\x1b" not in progress and "\\x1b[2Jthe PDF is bad" in progress
    assert run.collected


async def test_a_refused_poll_ends_the_wait_with_nothing_to_resume(tmp_path: Path) -> None:
    answers = iter([httpx.Response(200, json={**BATCH, "status": "in_progress"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(404, json={"error": {"message": "No such batch"}}))

    run = await wait(tmp_path, handler)
    assert run.report.stopped == "No such batch (HTTP 404)" and run.batch_id is None


async def test_a_poll_that_fails_now_and_then_is_asked_again(tmp_path: Path) -> None:
    answers = iter(
        [
            httpx.Response(200, json={**BATCH, "status": "in_progress"}),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(200, content=b"half a JSON {"),
        ]
    )
    fallback = gateway(BATCH, lines(result("good")))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/batches/batch_1":
            answer = next(answers, None)
            if answer is not None:
                return answer
        return fallback(request)

    run = await wait(tmp_path, handler)
    assert run.report.stopped is None and run.collected
    assert (tmp_path / "out/good/good.md").read_text() == "# Hello"


async def test_ids_going_into_urls_must_look_like_ids() -> None:
    client = BatchClient("http://gateway", transport=httpx.MockTransport(gateway(BATCH)))
    try:
        with pytest.raises(GatewayError, match="is not a batch or file id"):
            await client.get("../files/x")
        with pytest.raises(GatewayError, match="is not a batch or file id"):
            await client.cancel("a?b=c")
    finally:
        await client.aclose()


async def test_a_batch_missing_results_is_not_a_success(tmp_path: Path) -> None:
    inputs = lines({"custom_id": "a", "orig_path": "in/a.pdf"}, {"custom_id": "b"})
    run = await wait(tmp_path, gateway(BATCH, lines(result("a")), inputs))
    assert [d.orig_path for d, _ in run.report.converted] == ["in/a.pdf"]
    assert run.report.stopped == "1 document has no result in the batch's files: b"
    assert run.report.not_done == 1 and not run.report.ok


async def test_submit_sends_one_line_per_uploaded_document_and_counts_a_refused_upload(
    tmp_path: Path,
) -> None:
    for name in ("a.pdf", "sub/b.pdf", "big.pdf", "odd\\name.pdf"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"%PDF-1.4 " + name.encode())
    sent: dict[str, bytes] = {}
    created: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/v1/files":
            body = request.read()
            if b"big.pdf" in body:
                return httpx.Response(413, json={"error": {"message": "too large"}})
            file_id = f"file-{len(sent)}"
            sent[file_id] = body
            return httpx.Response(200, json={"id": file_id, "object": "file"})
        if path == "/v1/batches":
            created.append(orjson.loads(request.read()))
            return httpx.Response(200, json={**BATCH, "status": "validating"})
        if path == "/v1/files/file-out/content":
            return httpx.Response(200, content=lines(result("a"), result("sub/b")))
        return gateway(BATCH)(request)

    config = ConvertConfig(url="http://gateway", outdir=tmp_path / "out", poll_interval=0.01,
                           options=OCROptions("0-1", "markdown", True))  # fmt: skip
    run = BatchRun(config, LineBatchReporter(Console(file=PROGRESS)),
                   transport=httpx.MockTransport(handler))  # fmt: skip
    try:
        await run.submit(find_documents([str(tmp_path / "in")]))
    finally:
        await run.aclose()
    report = run.report
    assert (report.total, len(report.converted), report.not_done) == (4, 2, 0)
    assert sorted((d.path.name, why) for d, why in report.failed) == [
        ("big.pdf", "upload refused: too large (HTTP 413)"),
        ("odd\\name.pdf", "its output folder 'odd\\name' cannot be a batch's custom_id: it "
         "holds a NUL or a backslash (convert it without --batch)"),
    ]  # fmt: skip
    assert created == [{"input_file_id": "file-2", "endpoint": "/v1/ocr",
                        "completion_window": "24h",
                        "metadata": {"created_by": "ocrflux convert --batch"}}]  # fmt: skip
    batch_input = sent["file-2"]
    assert b'name="purpose"\r\n\r\nbatch' in batch_input
    body = batch_input.split(b"\r\n\r\n", 2)[2]
    requests = [orjson.loads(line) for line in body.splitlines() if line.startswith(b"{")]
    options = {"pages": "0-1", "table_format": "markdown", "skip_cross_page_merge": True}
    assert requests == [
        {"custom_id": "a", "method": "POST", "url": "/v1/ocr", "orig_path": f"{tmp_path}/in/a.pdf",
         "body": {"document": {"type": "file", "file_id": "file-0"}, **options}},
        {"custom_id": "sub/b", "method": "POST", "url": "/v1/ocr",
         "orig_path": f"{tmp_path}/in/sub/b.pdf",
         "body": {"document": {"type": "file", "file_id": "file-1"}, **options}},
    ]  # fmt: skip
    assert written(tmp_path) == ["out/a/a.md", "out/sub/b/b.md"]


async def test_a_gateway_without_the_files_api_is_named() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    client = BatchClient("http://gateway", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(GatewayError) as caught:
            await client.upload("a.pdf", b"%PDF", "ocr")
    finally:
        await client.aclose()
    assert caught.value.fatal
    assert caught.value.reason == (
        "the gateway at http://gateway has no Files API (POST /v1/files answered HTTP 404): "
        "it predates batch jobs; convert without --batch"
    )


def recording_gateway(create: httpx.Response, deleted: list[str]) -> Handler:
    """Uploads answer file-0, file-1, ...; the batch is `create`; DELETEs are recorded."""
    count = iter(range(100))

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "DELETE":
            deleted.append(path.removeprefix("/v1/files/"))
            return httpx.Response(200, json={"id": deleted[-1], "deleted": True})
        if path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/v1/files":
            return httpx.Response(200, json={"id": f"file-{next(count)}"})
        if path == "/v1/batches":
            return create
        if path == "/v1/files/file-out/content":
            return httpx.Response(200, content=lines(result("a"), result("b")))
        return gateway(BATCH)(request)

    return handler


async def submit(tmp_path: Path, handler: Handler) -> BatchRun:
    for name in ("a.pdf", "b.pdf"):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"%PDF")
    config = ConvertConfig(url="http://gateway", outdir=tmp_path / "out", poll_interval=0.01)
    run = BatchRun(config, LineBatchReporter(Console(file=PROGRESS)),
                   transport=httpx.MockTransport(handler))  # fmt: skip
    try:
        await run.submit(find_documents([str(tmp_path / "in")]))
    finally:
        await run.aclose()
    return run


async def test_a_batch_that_ends_deletes_the_documents_it_uploaded(tmp_path: Path) -> None:
    deleted: list[str] = []
    created = httpx.Response(200, json={**BATCH, "status": "validating"})
    run = await submit(tmp_path, recording_gateway(created, deleted))
    assert run.report.ok and len(run.report.converted) == 2
    # The documents go; the input and output files stay (batch wait can write them again).
    assert sorted(deleted) == ["file-0", "file-1"]


async def test_a_batch_never_created_leaves_no_uploads_behind(tmp_path: Path) -> None:
    deleted: list[str] = []
    refused = httpx.Response(429, json={"error": {"message": "too many batches running"}},
                             headers={"retry-after": "0"})  # fmt: skip
    run = await submit(tmp_path, recording_gateway(refused, deleted))
    assert run.report.stopped == "too many batches running (HTTP 429)" and run.batch_id is None
    assert sorted(deleted) == ["file-0", "file-1", "file-2"]  # the documents and the lines


def test_ctrl_c_before_the_batch_exists_deletes_the_uploads(tmp_path: Path) -> None:
    deleted: list[str] = []
    others = recording_gateway(httpx.Response(500), deleted)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/batches":
            raise KeyboardInterrupt  # Ctrl-C while the batch is being created
        return others(request)

    for name in ("a.pdf", "b.pdf"):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"%PDF")
    config = ConvertConfig(url="http://gateway", outdir=tmp_path / "out")
    out = io.StringIO()
    status = run_batch(
        config,
        LineBatchReporter(Console(file=PROGRESS)),
        documents=find_documents([str(tmp_path / "in")]),
        out=Console(file=out, width=200),
        transport=httpx.MockTransport(handler),
    )
    assert status == 130
    assert sorted(set(deleted)) == ["file-0", "file-1", "file-2"]
    assert (
        "stopped: interrupted before the batch was submitted; its uploaded files were "
        "deleted" in out.getvalue()
    )
    assert "ocrflux batch wait" not in out.getvalue()
