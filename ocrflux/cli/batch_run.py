"""`ocrflux convert --batch` and `ocrflux batch wait`: documents converted as one gateway batch.

Submit: each document is uploaded as a file (purpose `ocr`), one `/v1/ocr` line per document
names it by `file_id` with the document's output folder as `custom_id` (batch_names), the
lines are uploaded (purpose `batch`) and one batch is created. Wait: the batch is polled and
its request counts shown until it ends; then its output and error files are read line by line
and written in `convert`'s layout. Interrupted while the batch runs, the batch goes on and the
one command that picks it up again is printed: the results' places travel in the custom_ids.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ocrflux.cli.batch_client import (
    OCR_ENDPOINT,
    Batch,
    BatchClient,
    OutputLine,
    Refused,
    valid_id,
)
from ocrflux.cli.batch_names import CustomIdError, check_custom_id, custom_id, document_for
from ocrflux.cli.batch_progress import BatchReporter
from ocrflux.cli.client import GatewayError, OCRClient, checked_answer, error_text
from ocrflux.cli.convert import ConvertConfig, converted_before, outside
from ocrflux.cli.inputs import Document
from ocrflux.cli.outputs import JsonlFile, jsonl_record, write_atomic
from ocrflux.cli.printable import printable
from ocrflux.cli.report import Report

DEFAULT_URL = "http://localhost:8000"
METADATA = {"created_by": "ocrflux convert --batch"}
DISCARD_SECONDS = 15.0  # for deleting the uploads of a run interrupted before its batch existed
MAX_POLL_FAILURES = 10  # polls in a row that may fail (a gateway restarting) before giving up


@dataclass
class _Known:
    """What a run knows of a batch's lines: each custom_id's document, and the files the
    lines name (the uploaded documents, deleted once the batch has ended)."""

    documents: dict[str, Document]
    file_ids: list[str]


class BatchRun:
    """One batch: submitted by `submit` or picked up by id in `wait`; `report` holds what
    happened, also after an interruption, and `batch_id` the batch to resume."""

    def __init__(
        self,
        config: ConvertConfig,
        reporter: BatchReporter,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.reporter = reporter
        self.transport = transport
        self.report = Report()
        self.batch_id: str | None = None
        self.collected = False
        self.unusable: list[str] = []  # result lines that name no document or are no result
        self.uploads: list[str] = []  # files of a batch not created yet (deleted if it is not)
        self._client = BatchClient(
            config.url, config.api_key, timeout=config.timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def resume_command(self) -> str:
        """The one command that waits for this run's batch and writes its results."""
        assert self.batch_id is not None
        words = ["ocrflux", "batch", "wait", self.batch_id, "-o", str(self.config.outdir)]
        if self.config.url != DEFAULT_URL:
            words += ["--url", self.config.url]
        if self.config.jsonl is not None:
            words += ["--jsonl", str(self.config.jsonl)]
        return printable(shlex.join(words))

    async def submit(self, documents: list[Document]) -> None:
        config = self.config
        jsonl = JsonlFile(config.jsonl) if config.jsonl else None
        todo = [d for d in documents if config.force or not converted_before(d, config, jsonl)]
        self.report.total = len(todo)
        chosen = set(todo)
        self.report.skipped = [d for d in documents if d not in chosen]
        if not todo:
            return
        checker = OCRClient(config.url, config.api_key, transport=self.transport)
        try:
            await checker.check()
        except GatewayError as exc:
            self.report.stopped = exc.reason
            return
        finally:
            await checker.aclose()
        self.reporter.uploading(len(todo), len(self.report.skipped))
        try:
            uploaded = await self._upload_documents(todo)
            if not uploaded or self.report.stopped:
                return
            lines = b"".join(self._line(document, file_id) for document, file_id in uploaded)
            self.uploads.append(await self._client.upload("ocrflux-convert.jsonl", lines, "batch"))
            batch = await self._client.create(self.uploads[-1], METADATA)
        except GatewayError as exc:
            self.report.stopped = exc.reason
            await self.discard(self.uploads)
            return
        finally:
            self.reporter.end()
        self.batch_id = batch.id
        self.uploads = []
        known = _Known({custom_id(d): d for d, _ in uploaded}, [f for _, f in uploaded])
        await self._wait(batch, known)

    async def wait(self, batch_id: str) -> None:
        """Pick up a batch by id: wait for it, then write its results."""
        try:
            batch = await self._client.get(batch_id)
        except GatewayError as exc:
            self.report.stopped = exc.reason
            return
        if batch.endpoint != OCR_ENDPOINT:
            self.report.stopped = (
                f"batch {batch.id} runs {batch.endpoint or 'another endpoint'}, not "
                f"{OCR_ENDPOINT}: it has no documents to write (read its output file with the API)"
            )
            return
        self.batch_id = batch.id
        known = await self._known(batch)
        self.report.total = max(len(known.documents), batch.counts.total)
        await self._wait(batch, known)

    def _line(self, document: Document, file_id: str) -> bytes:
        options = self.config.options
        body: dict[str, Any] = {"document": {"type": "file", "file_id": file_id}}
        if options.pages:
            body["pages"] = options.pages
        if options.table_format:
            body["table_format"] = options.table_format
        if options.skip_cross_page_merge:
            body["skip_cross_page_merge"] = True
        line = {
            "custom_id": custom_id(document),
            "method": "POST",
            "url": OCR_ENDPOINT,
            "body": body,
            # Not part of OpenAI's line (the gateway reads only its own fields): the input's
            # name for a resumed run's JSONL and summary.
            "orig_path": document.orig_path,
        }
        return orjson.dumps(line) + b"\n"

    async def _upload_documents(self, todo: list[Document]) -> list[tuple[Document, str]]:
        uploaded: list[tuple[Document, str]] = []
        queue = iter(todo)
        workers = min(self.config.concurrency, len(todo))
        await asyncio.gather(*(self._upload_some(queue, uploaded) for _ in range(workers)))
        order = {d: n for n, d in enumerate(todo)}
        return sorted(uploaded, key=lambda pair: order[pair[0]])

    async def _upload_some(
        self, queue: Iterator[Document], uploaded: list[tuple[Document, str]]
    ) -> None:
        for document in queue:
            if self.report.stopped:
                return
            target = document.markdown_path(self.config.outdir)
            if outside(target, self.config.outdir):
                self._fail(
                    document,
                    "its Markdown would be written outside the output folder "
                    f"(to {target.resolve()}); give the folder that holds it instead",
                )
                continue
            problem = check_custom_id(custom_id(document))
            if problem is not None:  # it could not be told apart on the way back
                self._fail(
                    document,
                    f"its output folder '{custom_id(document)}' cannot be a batch's custom_id: "
                    f"{problem} (convert it without --batch)",
                )
                continue
            try:
                data = await asyncio.to_thread(document.path.read_bytes)
            except OSError as exc:
                self._fail(document, f"cannot read the file: {exc.strerror or exc}")
                continue
            try:
                file_id = await self._client.upload(document.path.name, data, "ocr")
            except GatewayError as exc:
                self._fail(document, f"upload refused: {exc.reason}")
                if exc.fatal:
                    self.report.stopped = exc.reason
                continue
            finally:
                del data
            uploaded.append((document, file_id))
            self.uploads.append(file_id)
            self.reporter.uploaded(document)

    async def _known(self, batch: Batch) -> _Known:
        """A picked-up batch's documents, from its input file (its lines' custom_ids, the
        inputs' names and the files they name); an input file that cannot be read leaves only
        the custom_ids of the results."""
        known = _Known({}, [])
        if batch.input_file_id is None:
            return known
        async for line in self._client.input_lines(batch.input_file_id):
            file_id = _file_id(line.get("body"))
            if file_id is not None:
                known.file_ids.append(file_id)
            value, orig = line.get("custom_id"), line.get("orig_path")
            if not isinstance(value, str) or value in known.documents:
                continue
            try:
                known.documents[value] = document_for(
                    value, self.config.outdir, orig if isinstance(orig, str) else None
                )
            except CustomIdError:
                continue  # reported when its result comes
        return known

    async def discard_after_interrupt(self) -> None:
        """`discard` the uploads of a batch never created, on a new connection pool (the
        interrupted run's is closed), within a few seconds."""
        self._client = BatchClient(
            self.config.url, self.config.api_key, timeout=10.0, transport=self.transport
        )
        try:
            async with asyncio.timeout(DISCARD_SECONDS):
                await self.discard(self.uploads)
        except TimeoutError:
            self.reporter.warn("the uploaded files were not all deleted in time")
        finally:
            await self._client.aclose()

    async def discard(self, file_ids: list[str]) -> None:
        """Delete files this run no longer needs (a failure to is a warning, not an error)."""
        queue = iter(list(file_ids))
        problems: list[str] = []

        async def work() -> None:
            for file_id in queue:
                try:
                    await self._client.delete(file_id)
                except GatewayError as exc:
                    problems.append(exc.reason)

        await asyncio.gather(*(work() for _ in range(min(self.config.concurrency, 8))))
        if problems:
            self.reporter.warn(
                f"{len(problems)} uploaded file(s) could not be deleted (the gateway's retention "
                f"will): {problems[0]}"
            )

    async def _wait(self, batch: Batch, known: _Known) -> None:
        failures = 0
        while True:
            self.reporter.waiting(batch)
            if batch.ended:
                break
            await asyncio.sleep(self.config.poll_interval)
            try:
                batch = await self._client.get(batch.id)
                failures = 0
            except Refused as exc:
                self.report.stopped = exc.reason
                self.batch_id = None  # gone, or not this key's: nothing to resume
                return
            except GatewayError as exc:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    self.report.stopped = exc.reason
                    return
        self.reporter.end()
        await self._collect(batch, known)

    async def _collect(self, batch: Batch, known: _Known) -> None:
        if batch.status == "failed":
            reasons = "; ".join(
                f"line {e.line}: {e.message}" if e.line else str(e.message)
                for e in (batch.errors.data if batch.errors else [])[:5]
            )
            self.report.stopped = f"the batch failed: {reasons or 'the gateway gave no reason'}"
        elif batch.status != "completed":
            self.report.stopped = f"the batch ended {batch.status}"
        jsonl = JsonlFile(self.config.jsonl) if self.config.jsonl else None
        if jsonl is not None:
            jsonl.open({d.orig_path for d in known.documents.values()})
        seen: set[str] = set()
        try:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id is None:
                    continue
                async for line in self._client.content(file_id):
                    if isinstance(line, GatewayError):
                        self._unusable(line.reason)
                        continue
                    self._result(line, known, seen, jsonl)
            self.collected = True
            await self.discard(known.file_ids)
            missing = [value for value in known.documents if value not in seen]
            if missing and self.report.stopped is None:
                count = len(missing)
                self.report.stopped = (
                    f"{count} document{'s have' if count != 1 else ' has'} no result in the "
                    f"batch's files: {', '.join(printable(m) for m in missing[:5])}"
                    + (", ..." if count > 5 else "")
                )
            if self.unusable:
                count = len(self.unusable)
                self.report.stopped = self.report.stopped or (
                    f"{count} result line{'s' * (count != 1)} of the gateway could not be "
                    f"used, the first: {self.unusable[0]}"
                )
        except GatewayError as exc:
            self.report.stopped = exc.reason
        finally:
            if jsonl is not None:
                jsonl.close()

    def _result(
        self, line: OutputLine, known: _Known, seen: set[str], jsonl: JsonlFile | None
    ) -> None:
        value = line.custom_id
        try:
            document = known.documents.get(value) or document_for(value, self.config.outdir)
        except CustomIdError as exc:
            self._unusable(str(exc))
            return
        if value in seen:
            return  # the gateway promises each custom_id once; the first one counts
        seen.add(value)
        if value not in known.documents:
            self.report.total += 1
        response = line.response
        if response is None or response.status_code != 200:
            self._fail(document, _line_error(line))
            return
        try:
            answer = checked_answer(response.body)
        except GatewayError as exc:
            self._fail(document, exc.reason)
            return
        try:
            write_atomic(document.markdown_path(self.config.outdir), answer["document_text"])
        except OSError as exc:
            self._fail(document, f"cannot write the Markdown: {exc.strerror or exc}")
            return
        if jsonl is not None:
            jsonl.add(jsonl_record(document.orig_path, answer))
        pages = len(answer.get("pages", []))
        fallback: list[int] = answer.get("fallback_pages", [])
        self.report.converted.append((document, pages))
        if fallback:
            self.report.partial.append((document, fallback))

    def _unusable(self, reason: str) -> None:
        self.unusable.append(reason)
        self.reporter.warn(reason)

    def _fail(self, document: Document, reason: str) -> None:
        self.report.failed.append((document, reason))
        self.reporter.failed(document, reason)


def _file_id(body: object) -> str | None:
    """The `file_id` a `/v1/ocr` line's body names, when it looks like one."""
    document = body.get("document") if isinstance(body, dict) else None
    file_id = document.get("file_id") if isinstance(document, dict) else None
    return file_id if isinstance(file_id, str) and valid_id(file_id) else None


def _line_error(line: OutputLine) -> str:
    """A failed line's reason in words: the endpoint's error and status, or the batch's."""
    response = line.response
    if response is not None:
        return f"{error_text(response.body)} (HTTP {response.status_code})"
    if line.error is not None and (line.error.message or line.error.code):
        return line.error.message or str(line.error.code)
    return "the gateway gave no result for it"
