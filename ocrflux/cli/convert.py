"""`ocrflux convert`: send documents to a running gateway, a few at a time, and keep the results.

Per document: read the file, upload it to `/v1/ocr` with streaming on, report each page as it
is read, then write `OUTDIR/<folders>/<name>/<name>.md` (and a JSONL line) whole. A document
already converted is skipped unless `force`. A failure is recorded with its reason and the
others go on; only an unreachable gateway or a refused API key stops the run early.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from ocrflux.cli.client import GatewayError, OCRClient, OCROptions
from ocrflux.cli.inputs import Document
from ocrflux.cli.outputs import JsonlFile, jsonl_record, write_atomic
from ocrflux.cli.progress import Reporter, make_reporter
from ocrflux.cli.report import Report, print_summary

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's convention for a run ended by SIGINT


@dataclass(frozen=True)
class ConvertConfig:
    """One run's choices (the command line's options)."""

    url: str
    outdir: Path
    api_key: str | None = None
    jsonl: Path | None = None
    concurrency: int = 4
    force: bool = False
    timeout: float = 3600.0
    options: OCROptions = field(default_factory=OCROptions)
    poll_interval: float = 2.0  # --batch: seconds between two looks at the batch


class Conversion:
    """One run over a list of documents; `report` holds what happened, also after Ctrl-C."""

    def __init__(
        self,
        documents: list[Document],
        config: ConvertConfig,
        reporter: Reporter,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.documents = documents
        self.config = config
        self.reporter = reporter
        self.transport = transport
        self.report = Report()
        self.jsonl = JsonlFile(config.jsonl) if config.jsonl else None

    async def run(self) -> None:
        config = self.config
        todo = [
            d for d in self.documents if config.force or not converted_before(d, config, self.jsonl)
        ]
        self.report.total = len(todo)
        chosen = set(todo)
        self.report.skipped = [d for d in self.documents if d not in chosen]
        if not todo:
            return
        client = OCRClient(
            config.url, config.api_key, timeout=config.timeout, transport=self.transport
        )
        try:
            await client.check()
            if self.jsonl is not None:
                self.jsonl.open({d.orig_path for d in todo})
            self.reporter.begin(len(todo), len(self.report.skipped))
            queue = iter(todo)  # shared by the workers: each takes the next document
            workers = min(config.concurrency, len(todo))
            await asyncio.gather(*(self._work(client, queue) for _ in range(workers)))
        except GatewayError as exc:  # the check: nothing was started
            self.report.stopped = exc.reason
        finally:
            self.reporter.end()
            if self.jsonl is not None:
                self.jsonl.close()
            await client.aclose()

    async def _work(self, client: OCRClient, queue: Iterator[Document]) -> None:
        for document in queue:
            if self.report.stopped:
                return
            await self._convert(client, document)

    async def _convert(self, client: OCRClient, document: Document) -> None:
        self.reporter.started(document)
        target = document.markdown_path(self.config.outdir)
        if outside(target, self.config.outdir):
            # A glob through `..`, or a link in OUTDIR: nothing is sent, nothing written.
            self._fail(
                document,
                "its Markdown would be written outside the output folder "
                f"(to {target.resolve()}); give the folder that holds it instead",
            )
            return
        try:
            data = await asyncio.to_thread(document.path.read_bytes)
        except OSError as exc:
            self._fail(document, f"cannot read the file: {exc.strerror or exc}")
            return
        try:
            answer = await client.convert(
                document.path.name,
                data,
                self.config.options,
                lambda page: self.reporter.progress(document, page),
            )
        except GatewayError as exc:
            self._fail(document, exc.reason)
            if exc.fatal:
                self.report.stopped = exc.reason
            return
        finally:
            del data
        try:
            write_atomic(target, answer["document_text"])
        except OSError as exc:
            self._fail(document, f"cannot write the Markdown: {exc.strerror or exc}")
            return
        if self.jsonl is not None:
            self.jsonl.add(jsonl_record(document.orig_path, answer))
        pages = len(answer.get("pages", []))
        fallback: list[int] = answer.get("fallback_pages", [])
        self.report.converted.append((document, pages))
        if fallback:
            self.report.partial.append((document, fallback))
        self.reporter.finished(document, pages, fallback)

    def _fail(self, document: Document, reason: str) -> None:
        self.report.failed.append((document, reason))
        self.reporter.failed(document, reason)


def converted_before(document: Document, config: ConvertConfig, jsonl: JsonlFile | None) -> bool:
    """Its Markdown is there (and its JSONL line, when the run writes a JSONL)."""
    target = document.markdown_path(config.outdir)
    if outside(target, config.outdir) or not target.exists():
        return False
    return jsonl is None or jsonl.has(document.orig_path)


def outside(path: Path, outdir: Path) -> bool:
    """True when `path`, resolved (`..` and links followed), is not below `outdir`."""
    return not path.resolve().is_relative_to(outdir.resolve())


def convert_documents(
    documents: list[Document], config: ConvertConfig, *, out: Console, err: Console
) -> int:
    """Run the conversion, print the summary on `out`, and return the exit status."""
    conversion = Conversion(documents, config, make_reporter(err))

    async def run() -> None:
        # SIGTERM ends the run like Ctrl-C (asyncio.run turns SIGINT into a cancellation).
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await conversion.run()

    status = 0
    try:
        asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        # The run was cancelled: files written so far are whole, the JSONL renamed into place.
        conversion.report.stopped = (
            "interrupted; run the same command again to convert the rest "
            "(converted documents are skipped)"
        )
        status = EXIT_INTERRUPTED
    report = conversion.report
    print_summary(report, out)
    if status == 0 and not report.ok:
        status = EXIT_FAILED
    return status
