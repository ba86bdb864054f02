"""The batch run's progress: what the bars count, and what plain lines say."""

from __future__ import annotations

import io
from pathlib import Path, PurePath

from rich.console import Console

from ocrflux.cli.batch_client import Batch
from ocrflux.cli.batch_progress import BarBatchReporter, LineBatchReporter
from ocrflux.cli.inputs import Document


def batch(status: str, completed: int, failed: int = 0) -> Batch:
    counts = {"total": 3, "completed": completed, "failed": failed}
    return Batch.model_validate({"id": "batch_1", "status": status, "request_counts": counts})


DOCS = [Document(Path(f"in/{n}.pdf"), PurePath(n), n) for n in "abc"]


def test_the_upload_bar_counts_uploads_only_and_the_batch_bar_its_counts() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    reporter = BarBatchReporter(console)
    reporter.uploading(3, 0)
    for document in DOCS:
        reporter.uploaded(document)
    reporter.waiting(batch("in_progress", 1))
    reporter.waiting(batch("completed", 2, 1))
    reporter.failed(DOCS[2], "the PDF is bad (HTTP 400)")  # a result, not an upload
    reporter.end()
    upload, run = reporter.bars.tasks
    assert (upload.completed, upload.total) == (3, 3)
    assert (run.completed, run.total) == (3, 3)
    assert "failed" in console.file.getvalue()  # type: ignore[attr-defined]


def test_plain_lines_say_each_status_once() -> None:
    out = io.StringIO()
    reporter = LineBatchReporter(Console(file=out, width=200))
    reporter.uploading(3, 1)
    reporter.uploaded(DOCS[0])
    for _ in range(3):
        reporter.waiting(batch("in_progress", 0))
    reporter.waiting(batch("completed", 3))
    assert out.getvalue().splitlines() == [
        "uploading 3 documents, 1 already converted (--force converts them again)",
        "[1/3] uploaded in/a.pdf",
        "batch batch_1: in_progress, 0/3 done",
        "batch batch_1: completed, 3/3 done",
    ]
