"""Live progress of a batch run: the uploads, then the batch's own request counts.

rich bars on a terminal, plain lines anywhere else (a line when the counts change, at most one
every few seconds), on stderr like `convert`'s progress.
"""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ocrflux.cli.batch_client import Batch
from ocrflux.cli.inputs import Document
from ocrflux.cli.printable import printable
from ocrflux.cli.progress import shown

PLAIN_INTERVAL = 2.0  # seconds between two lines of moving counts in plain output


class BatchReporter(Protocol):
    def uploading(self, total: int, skipped: int) -> None: ...

    def uploaded(self, document: Document) -> None: ...

    def failed(self, document: Document, reason: str) -> None: ...

    def waiting(self, batch: Batch) -> None: ...

    def warn(self, text: str) -> None: ...

    def end(self) -> None: ...


def make_batch_reporter(console: Console) -> BatchReporter:
    if console.is_terminal and not console.is_dumb_terminal:
        return BarBatchReporter(console)
    return LineBatchReporter(console)


def _counts(batch: Batch) -> str:
    counts = batch.counts
    failed = f", {counts.failed} failed" if counts.failed else ""
    return f"{counts.done}/{counts.total} done{failed}"


class LineBatchReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.sent = 0
        self._last: tuple[str, int, int] | None = None
        self._last_at = 0.0

    def _say(self, text: str) -> None:
        self.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def uploading(self, total: int, skipped: int) -> None:
        self.total = total
        already = f", {skipped} already converted (--force converts them again)" if skipped else ""
        self._say(f"uploading {total} document{'s' * (total != 1)}{already}")

    def uploaded(self, document: Document) -> None:
        self.sent += 1
        self._say(f"[{self.sent}/{self.total}] uploaded {document.orig_path}")

    def failed(self, document: Document, reason: str) -> None:
        self._say(f"FAILED {document.orig_path}: {reason}")

    def warn(self, text: str) -> None:
        self._say(f"warning: {text}")

    def waiting(self, batch: Batch) -> None:
        """A line when the status changes, and when the counts moved (at most one a while)."""
        state = (batch.status, batch.counts.done, batch.counts.failed)
        now = time.monotonic()
        if self._last is not None:
            if state == self._last:
                return
            if state[0] == self._last[0] and now - self._last_at < PLAIN_INTERVAL:
                return
        self._last, self._last_at = state, now
        self._say(f"batch {batch.id}: {batch.status}, {_counts(batch)}")

    def end(self) -> None:
        pass


class BarBatchReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._upload: TaskID | None = None
        self._batch: TaskID | None = None

    def uploading(self, total: int, skipped: int) -> None:
        if skipped:
            self.console.print(
                f"{skipped} already converted (--force converts them again)", markup=False
            )
        self._upload = self.bars.add_task("uploading", total=total, unit="docs")
        self.bars.start()

    def uploaded(self, document: Document) -> None:
        if self._upload is not None:
            self.bars.update(self._upload, advance=1)

    def failed(self, document: Document, reason: str) -> None:
        self.bars.console.print(
            f"[red]failed[/] {shown(document.orig_path)}: {shown(reason)}", highlight=False
        )
        if self._upload is not None and self._batch is None:  # an upload's failure
            self.bars.update(self._upload, advance=1)

    def warn(self, text: str) -> None:
        self.bars.console.print(f"[yellow]warning[/] {shown(text)}", highlight=False)

    def waiting(self, batch: Batch) -> None:
        counts = batch.counts
        failed = f" ([red]{counts.failed} failed[/])" if counts.failed else ""
        description = f"batch {shown(batch.id)} {batch.status}{failed}"
        if self._batch is None:
            self.bars.start()
            self._batch = self.bars.add_task(description, total=counts.total or None, unit="docs")
        self.bars.update(
            self._batch,
            description=description,
            total=counts.total or None,
            completed=counts.done,
        )

    def end(self) -> None:
        self.bars.stop()
