"""Live progress of a `convert` run: rich bars on a terminal, plain lines anywhere else.

Documents done / total (with failures), and for each document in flight its pages done /
total, from the gateway's streamed `page` events. Progress goes to stderr, so stdout carries
only the summary.
"""

from __future__ import annotations

import time
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ocrflux.cli.client import PageProgress
from ocrflux.cli.inputs import Document
from ocrflux.cli.printable import printable

PLAIN_INTERVAL = 2.0  # seconds between two page lines of one document in plain output


class Reporter(Protocol):
    """What a run tells the person watching it."""

    def begin(self, total: int, skipped: int) -> None: ...

    def started(self, document: Document) -> None: ...

    def progress(self, document: Document, page: PageProgress | None) -> None: ...

    def finished(self, document: Document, pages: int, fallback_pages: list[int]) -> None: ...

    def failed(self, document: Document, reason: str) -> None: ...

    def end(self) -> None: ...


def make_reporter(console: Console) -> Reporter:
    """Bars when `console` is an interactive terminal, plain lines otherwise."""
    if console.is_terminal and not console.is_dumb_terminal:
        return BarReporter(console)
    return LineReporter(console)


class LineReporter:
    """One line per event worth a line; no cursor movement, no colour, no carriage return."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0
        self.done = 0
        self._last_line: dict[Document, float] = {}

    def _say(self, text: str) -> None:
        # File names and the gateway's reasons are in the line: escapes shown, not obeyed.
        self.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    def _counter(self) -> str:
        return f"[{self.done}/{self.total}]"

    def begin(self, total: int, skipped: int) -> None:
        self.total = total
        already = f", {skipped} already converted (--force converts them again)" if skipped else ""
        self._say(f"converting {total} document{'s' * (total != 1)}{already}")

    def started(self, document: Document) -> None:
        self._last_line[document] = 0.0

    def progress(self, document: Document, page: PageProgress | None) -> None:
        if page is None:
            self._say(f"{self._counter()} {document.orig_path}: merging across pages")
            return
        now = time.monotonic()
        if page.done < page.total and now - self._last_line.get(document, 0.0) < PLAIN_INTERVAL:
            return
        self._last_line[document] = now
        self._say(f"{self._counter()} {document.orig_path}: page {page.done}/{page.total}")

    def finished(self, document: Document, pages: int, fallback_pages: list[int]) -> None:
        self.done += 1
        self._last_line.pop(document, None)
        note = f", {len(fallback_pages)} unreadable" if fallback_pages else ""
        count = f"{pages} page{'s' * (pages != 1)}"
        self._say(f"{self._counter()} done {document.orig_path} ({count}{note})")

    def failed(self, document: Document, reason: str) -> None:
        self.done += 1
        self._last_line.pop(document, None)
        self._say(f"{self._counter()} FAILED {document.orig_path}: {reason}")

    def end(self) -> None:
        pass


class BarReporter:
    """rich bars: one for the run, one per document in flight (removed when it ends)."""

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
        self.failures = 0
        self._run: TaskID | None = None
        self._tasks: dict[Document, TaskID] = {}

    def begin(self, total: int, skipped: int) -> None:
        if skipped:
            self.console.print(
                f"{skipped} already converted (--force converts them again)", markup=False
            )
        self._run = self.bars.add_task("documents", total=total, unit="docs")
        self.bars.start()

    def _advance_run(self) -> None:
        assert self._run is not None
        failed = f" ([red]{self.failures} failed[/])" if self.failures else ""
        self.bars.update(self._run, advance=1, description=f"documents{failed}")

    def started(self, document: Document) -> None:
        self._tasks[document] = self.bars.add_task(
            f"  {shown(_short(document.orig_path))}", total=None, unit="pages"
        )

    def progress(self, document: Document, page: PageProgress | None) -> None:
        task = self._tasks.get(document)
        if task is None:
            return
        if page is None:
            name = shown(_short(document.orig_path))
            self.bars.update(task, description=f"  {name} [dim](merging)[/]")
        else:
            self.bars.update(task, total=page.total, completed=page.done)

    def _stop(self, document: Document) -> None:
        task = self._tasks.pop(document, None)
        if task is not None:
            self.bars.remove_task(task)

    def finished(self, document: Document, pages: int, fallback_pages: list[int]) -> None:
        self._stop(document)
        self._advance_run()

    def failed(self, document: Document, reason: str) -> None:
        self._stop(document)
        self.failures += 1
        self.bars.console.print(
            f"[red]failed[/] {shown(document.orig_path)}: {shown(reason)}", highlight=False
        )
        self._advance_run()

    def end(self) -> None:
        for task in list(self._tasks.values()):
            self.bars.remove_task(task)
        self.bars.stop()


def shown(text: str) -> str:
    """Outside text in a rich markup string: control characters and markup escaped."""
    return escape(printable(text))


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
