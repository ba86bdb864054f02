"""`ocrflux batch wait|list|status|cancel` and the run behind `convert --batch`: the gateway's
batches seen from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ocrflux.cli.batch_client import Batch, BatchClient, valid_id
from ocrflux.cli.batch_progress import BatchReporter, make_batch_reporter
from ocrflux.cli.batch_run import DEFAULT_URL, BatchRun
from ocrflux.cli.client import GatewayError
from ocrflux.cli.convert import EXIT_FAILED, EXIT_INTERRUPTED, ConvertConfig
from ocrflux.cli.inputs import Document
from ocrflux.cli.printable import printable
from ocrflux.cli.report import print_summary

T = TypeVar("T")
EXIT_GATEWAY = 1

url_option = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    envvar="OCRFLUX_URL",
    help="The gateway's base URL (a trailing /v1 is fine) [OCRFLUX_URL].",
)
key_option = click.option(
    "--api-key",
    envvar="OCRFLUX_API_KEY",
    help="Key for a gateway with API_KEYS set [OCRFLUX_API_KEY].",
)
poll_option = click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between two looks at the batch's progress.",
)


def _batch_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not valid_id(value):
        raise click.BadParameter(f"{printable(value[:80])!r} is not a batch id")
    return value


def _optional_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _batch_id(ctx, param, value)


def _say(console: Console, text: str) -> None:
    console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


def _call(url: str, api_key: str | None, work: Callable[[BatchClient], Awaitable[T]]) -> T:
    """Run one request against the gateway; a GatewayError is a message and exit status 1."""

    async def main() -> T:
        client = BatchClient(url, api_key or None, timeout=60.0)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        _say(Console(stderr=True), f"error: {exc.reason}")
        raise SystemExit(EXIT_GATEWAY) from None


def _when(seconds: int) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _counts(batch: Batch) -> str:
    counts = batch.counts
    return f"{counts.done}/{counts.total} done, {counts.failed} failed"


def print_batch(batch: Batch, console: Console) -> None:
    """One batch, a field a line."""
    rows: list[tuple[str, Any]] = [
        ("batch", batch.id),
        ("status", batch.status),
        ("endpoint", batch.endpoint),
        ("requests", _counts(batch)),
        ("created", _when(batch.created_at)),
        ("output file", batch.output_file_id or "-"),
        ("error file", batch.error_file_id or "-"),
    ]
    for key, value in (batch.metadata or {}).items():
        rows.append((f"metadata {key}", value))
    for error in (batch.errors.data if batch.errors else [])[:10]:
        where = f"line {error.line}: " if error.line else ""
        rows.append(("error", f"{where}{error.message or error.code or ''}"))
    for key, value in rows:
        _say(console, f"{key}: {value}")


def run_batch(
    config: ConvertConfig,
    reporter: BatchReporter,
    *,
    documents: list[Document] | None = None,
    batch_id: str | None = None,
    out: Console,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Submit `documents` as a batch (or pick up `batch_id`), wait, write the results, print
    the summary on `out`, and return the exit status (the resume command when it stopped
    before the results were written)."""
    run = BatchRun(config, reporter, transport=transport)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            if documents is not None:
                await run.submit(documents)
            else:
                assert batch_id is not None
                await run.wait(batch_id)
        finally:
            reporter.end()
            await run.aclose()

    status = 0
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = EXIT_INTERRUPTED
        if run.batch_id is None:
            run.report.stopped = (
                "interrupted before the batch was submitted" if documents else "interrupted"
            )
            if run.uploads:
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: leave them
                    asyncio.run(run.discard_after_interrupt())
                    run.report.stopped += "; its uploaded files were deleted"
        else:
            run.report.stopped = "interrupted; the batch goes on running on the gateway"
    report = run.report
    print_summary(report, out)
    if run.batch_id is not None and not run.collected:
        out.print(
            f"to wait for batch {printable(run.batch_id)} and write its results, run: "
            f"{run.resume_command()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if status == 0 and not report.ok:
        status = EXIT_FAILED
    return status


@click.group()
def batch() -> None:
    """Batches on the gateway: wait for one and write its results, list, show, cancel."""


@batch.command(context_settings={"max_content_width": 100})
@click.argument("batch_id", metavar="ID", callback=_batch_id)
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the results (the -o of the convert --batch that submitted it).",
)
@click.option(
    "--jsonl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one line per document with the OCRFlux toolkit's result fields.",
)
@url_option
@key_option
@poll_option
def wait(
    batch_id: str,
    outdir: Path,
    jsonl: Path | None,
    url: str,
    api_key: str | None,
    poll_interval: float,
) -> None:
    """Wait for batch ID (submitted by `convert --batch`), then write its documents' Markdown
    as `convert` does.

    Exits 1 when any document failed, 130 when interrupted (the batch goes on).
    """
    config = ConvertConfig(
        url=url, outdir=outdir, api_key=api_key or None, jsonl=jsonl, poll_interval=poll_interval
    )
    reporter = make_batch_reporter(Console(stderr=True))
    raise SystemExit(run_batch(config, reporter, batch_id=batch_id, out=Console()))


@batch.command(name="list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--after", callback=_optional_id, help="List the batches older than this one.")
@url_option
@key_option
def list_(limit: int, after: str | None, url: str, api_key: str | None) -> None:
    """The newest batches, one a row."""
    page = _call(url, api_key, lambda client: client.list(limit, after))
    console = Console()
    if not page.data:
        _say(console, "no batches")
        return
    table = Table(box=box.ROUNDED if console.is_terminal else box.ASCII)
    for column in ("id", "status", "endpoint", "requests", "created"):
        table.add_column(column, overflow="fold")
    for item in page.data:
        cells = (item.id, item.status, item.endpoint, _counts(item), _when(item.created_at))
        table.add_row(*(Text(printable(cell)) for cell in cells))
    console.print(table)
    if page.has_more:
        _say(console, f"more: ocrflux batch list --after {page.data[-1].id}")


@batch.command()
@click.argument("batch_id", metavar="ID", callback=_batch_id)
@url_option
@key_option
def status(batch_id: str, url: str, api_key: str | None) -> None:
    """Batch ID's status, counts and files."""
    print_batch(_call(url, api_key, lambda client: client.get(batch_id)), Console())


@batch.command()
@click.argument("batch_id", metavar="ID", callback=_batch_id)
@url_option
@key_option
def cancel(batch_id: str, url: str, api_key: str | None) -> None:
    """Cancel batch ID: lines not started are not run; its results so far stay readable
    (`ocrflux batch wait ID -o OUT` writes them)."""
    print_batch(_call(url, api_key, lambda client: client.cancel(batch_id)), Console())
