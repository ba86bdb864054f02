"""What a `convert` run did, and the summary printed at its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ocrflux.cli.inputs import Document
from ocrflux.cli.printable import printable


@dataclass
class Report:
    """Each document's outcome, filled in as the run goes."""

    total: int = 0
    converted: list[tuple[Document, int]] = field(default_factory=list)
    partial: list[tuple[Document, list[int]]] = field(default_factory=list)  # fallback pages
    skipped: list[Document] = field(default_factory=list)
    failed: list[tuple[Document, str]] = field(default_factory=list)
    stopped: str | None = None  # why the run ended early (interrupted, gateway unreachable)

    @property
    def not_done(self) -> int:
        return self.total - len(self.converted) - len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None


def print_summary(report: Report, console: Console) -> None:
    """Counts in one line, then a table naming each failure and each partly read document."""
    parts = [f"{len(report.converted)} converted"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (already converted)")
    parts.append(f"{len(report.failed)} failed")
    if report.stopped and report.not_done:
        parts.append(f"{report.not_done} not converted")
    console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)
    if report.stopped:
        stopped = f"stopped: {printable(report.stopped)}"
        console.print(stopped, markup=False, highlight=False, soft_wrap=True)
    if not report.failed and not report.partial:
        return
    # Plain ASCII rules off a terminal: log files and CI pages show them as drawn.
    table = Table(box=box.ROUNDED if console.is_terminal else box.ASCII, show_lines=False)
    table.add_column("document", overflow="fold")
    table.add_column("result")
    table.add_column("why", overflow="fold")
    for document, reason in report.failed:
        table.add_row(Text(printable(document.orig_path)), "failed", Text(printable(reason)))
    for document, pages in report.partial:
        shown = ", ".join(str(p) for p in pages)
        table.add_row(
            Text(printable(document.orig_path)),
            "converted",
            f"page(s) {shown} (0-based) could not be read and are empty in the Markdown",
        )
    console.print(table)
