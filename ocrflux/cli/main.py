"""The `ocrflux` console script: a group of `serve`, `convert` and `batch`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ocrflux import __version__
from ocrflux.cli.batch_commands import batch, poll_option, run_batch
from ocrflux.cli.batch_progress import make_batch_reporter
from ocrflux.cli.client import OCROptions
from ocrflux.cli.convert import ConvertConfig, convert_documents
from ocrflux.cli.inputs import InputError, find_documents
from ocrflux.cli.printable import printable
from ocrflux.cli.serve import serve_command
from ocrflux.page_selection import PageSelectionError, parse_selection


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocrflux")
def cli() -> None:
    """OCRFlux: turn PDFs and page images into Markdown."""


cli.add_command(serve_command())
cli.add_command(batch)


def _check_pages(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """`--pages` read by the API's own parser: a mistake is a usage error, before any upload."""
    if value is not None:
        try:
            parse_selection(value)
        except PageSelectionError as exc:
            raise click.BadParameter(printable(exc.message)) from None
    return value


@cli.command(context_settings={"max_content_width": 100})
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("markdowns"),
    show_default=True,
    help="Folder for the results: OUTDIR/<folders>/<name>/<name>.md.",
)
@click.option(
    "--url",
    default="http://localhost:8000",
    show_default=True,
    envvar="OCRFLUX_URL",
    help="The gateway's base URL (a trailing /v1 is fine) [OCRFLUX_URL].",
)
@click.option(
    "--api-key",
    envvar="OCRFLUX_API_KEY",
    help="Key for a gateway with API_KEYS set [OCRFLUX_API_KEY].",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Documents sent at once.",
)
@click.option(
    "--pages",
    callback=_check_pages,
    help="0-based pages of every document to read, e.g. '0-2,5'.",
)
@click.option(
    "--table-format",
    type=click.Choice(["html", "markdown"]),
    help="Tables as HTML (the model's own, keeps merged cells) or Markdown pipes.",
)
@click.option(
    "--skip-cross-page-merge",
    is_flag=True,
    help="Join pages as they are, without merging paragraphs and tables split by page breaks.",
)
@click.option(
    "--jsonl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one line per document with the OCRFlux toolkit's result fields.",
)
@click.option("--force", is_flag=True, help="Convert documents already converted again.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the gateway's next answer on one document.",
)
@click.option(
    "--batch",
    "as_batch",
    is_flag=True,
    help="Submit the documents as one batch on the gateway: it goes on if this command stops "
    "(Ctrl-C prints the `ocrflux batch wait` command that picks it up).",
)
@poll_option
def convert(
    paths: tuple[str, ...],
    outdir: Path,
    url: str,
    api_key: str | None,
    concurrency: int,
    pages: str | None,
    table_format: str | None,
    skip_cross_page_merge: bool,
    jsonl: Path | None,
    force: bool,
    timeout: float,
    as_batch: bool,
    poll_interval: float,
) -> None:
    """Convert PDFs and images (files, folders searched recursively, globs) with a running
    gateway, writing one Markdown file per document.

    Exits 1 when any document failed (the summary says which and why), 130 when interrupted.
    """
    try:
        documents = find_documents(paths)
    except InputError as exc:
        raise click.UsageError(printable(str(exc))) from None
    config = ConvertConfig(
        url=url,
        outdir=outdir,
        api_key=api_key or None,
        jsonl=jsonl,
        concurrency=concurrency,
        force=force,
        timeout=timeout,
        options=OCROptions(pages, table_format, skip_cross_page_merge),
        poll_interval=poll_interval,
    )
    if as_batch:
        reporter = make_batch_reporter(Console(stderr=True))
        raise SystemExit(run_batch(config, reporter, documents=documents, out=Console()))
    status = convert_documents(documents, config, out=Console(), err=Console(stderr=True))
    raise SystemExit(status)


def main() -> None:
    cli(prog_name="ocrflux")
