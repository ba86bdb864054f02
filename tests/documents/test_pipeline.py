"""The documents pipeline with a scripted engine: order, bounds, fallbacks, merges, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from ocrflux.documents.pipeline import (
    DocumentOutcome,
    DocumentRead,
    DocumentReader,
    MergeStarted,
    PageImage,
    PageRead,
)
from ocrflux.engines.base import MergeAnswer, PageJob, PageResult, TableMergeAnswer
from ocrflux.errors import APIError
from ocrflux.format.page import PageResponse
from ocrflux.intake.images import PreparedImage
from ocrflux.protocol import Usage

JOB = PageJob("req-1")


def page(text: str) -> PageResponse:
    return PageResponse("en", True, 0, False, False, text)


@dataclass
class Source:
    """Pages named by their index; image width carries the index so the engine can tell."""

    texts: list[str | None]
    multi: bool = True
    rendered: list[int] = field(default_factory=list)
    closed: bool = False

    @property
    def num_pages(self) -> int:
        return len(self.texts)

    def joins(self, index: int) -> bool:
        return self.multi

    async def page(self, index: int) -> PageImage:
        self.rendered.append(index)
        return PageImage(PreparedImage(f"data:image/png;base64,{index}", index + 1, 10, "", 0), 96)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Engine:
    """Answers each page with its scripted text (None: a fallback), after a per-page delay."""

    source: Source
    delays: dict[int, float] = field(default_factory=dict)
    merges: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    tables: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: dict[int, APIError] = field(default_factory=dict)
    name: str = "scripted"
    in_flight: int = 0
    most_in_flight: int = 0
    detect_calls: list[tuple[list[str], list[str]]] = field(default_factory=list)
    table_calls: list[tuple[str, str]] = field(default_factory=list)

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        index = image.width - 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(index, 0.001))
        finally:
            self.in_flight -= 1
        usage = Usage(prompt_tokens=10, completion_tokens=index, total_tokens=10 + index)
        if index in self.errors:
            return PageResult(None, usage=usage, error=self.errors[index])
        text = self.source.texts[index]
        if text is None:
            return PageResult(None, raw_text=f"not json {index}", usage=usage)
        return PageResult(page(text), raw_text="{...}", usage=usage)

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        self.detect_calls.append((previous, following))
        pairs = self.merges.get(
            (previous[-1] if previous else "", following[0] if following else "")
        )
        return MergeAnswer(pairs or [], Usage(prompt_tokens=1, total_tokens=1))

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        self.table_calls.append((first, second))
        return TableMergeAnswer(self.tables.get((first, second)), Usage(total_tokens=2))


async def run(
    reader: DocumentReader, source: Source, selection: Iterable[int] | None = None, **kw: bool
) -> tuple[list[object], DocumentOutcome]:
    events: list[object] = []
    pages = list(range(source.num_pages)) if selection is None else list(selection)
    async for item in reader.read(source, pages, JOB, **kw):
        events.append(item)
    last = events[-1]
    assert isinstance(last, DocumentRead)
    return events, last.outcome


async def test_pages_come_out_in_page_order_although_page_zero_finishes_last() -> None:
    source = Source(["# A", "B", "C"])
    engine = Engine(source, delays={0: 0.05})
    events, outcome = await run(DocumentReader(engine, pages_in_flight=3), source, merge=False)
    order = [e.page.index for e in events if isinstance(e, PageRead)]
    assert order == [0, 1, 2]
    assert [e.done for e in events if isinstance(e, PageRead)] == [1, 2, 3]
    assert outcome.text == "# A\n\nB\n\nC"
    assert outcome.usage.completion_tokens == 0 + 1 + 2


async def test_pages_in_flight_are_bounded_and_rendering_is_lazy() -> None:
    source = Source([f"p{i}" for i in range(12)])
    engine = Engine(source, delays={i: 0.01 for i in range(12)})
    reader = DocumentReader(engine, pages_in_flight=3)
    seen_rendered = []
    async for item in reader.read(source, range(12), JOB, merge=False):
        if isinstance(item, PageRead) and item.done == 1:
            seen_rendered = list(source.rendered)
    assert engine.most_in_flight == 3
    # When page 0 came out, no more than the bound (plus the pages it freed) had been rendered.
    assert len(seen_rendered) <= 4


async def test_selection_reads_only_the_chosen_pages() -> None:
    source = Source(["a", "b", "c", "d"])
    _, outcome = await run(DocumentReader(Engine(source), pages_in_flight=2), source, [1, 3])
    assert sorted(source.rendered) == [1, 3]
    assert [p.index for p in outcome.pages] == [1, 3]
    assert outcome.num_pages == 4


async def test_fallback_pages_are_listed_and_empty_in_the_document() -> None:
    source = Source(["one", None, "three"])
    _, outcome = await run(DocumentReader(Engine(source), pages_in_flight=2), source)
    assert outcome.fallback_pages == [1]
    assert outcome.text == "one\n\nthree"


async def test_chat_keeps_a_fallback_page_raw_answer() -> None:
    source = Source(["one", None])
    reader = DocumentReader(Engine(source), pages_in_flight=2)
    _, outcome = await run(reader, source, fallback_text=True)
    assert outcome.text == "one\n\nnot json 1"


async def test_error_rate_beyond_the_limit_fails_the_document() -> None:
    source = Source(["one", None, None, "four"])
    reader = DocumentReader(Engine(source), pages_in_flight=2, max_error_rate=0.25)
    with pytest.raises(APIError) as caught:
        await run(reader, source)
    assert caught.value.status == 502
    assert "2 of 4 pages" in caught.value.message and "0.25" in caught.value.message


async def test_every_page_failing_to_be_read_raises_the_first_cause() -> None:
    source = Source(["one", "two"])
    unavailable = APIError(503, "the model server is unreachable", code="upstream_unavailable")
    engine = Engine(source, errors={0: unavailable, 1: unavailable})
    with pytest.raises(APIError) as caught:
        await run(DocumentReader(engine, pages_in_flight=2), source)
    assert caught.value is unavailable


async def test_one_failed_page_does_not_sink_the_document() -> None:
    source = Source(["one", "two"])
    engine = Engine(source, errors={1: APIError(502, "boom", code="upstream_error")})
    _, outcome = await run(DocumentReader(engine, pages_in_flight=2), source)
    assert outcome.fallback_pages == [1]
    assert outcome.text == "one"


async def test_paragraph_and_table_merges_follow_the_toolkit() -> None:
    t1, t2, t3 = (f"<table><tr><td>{n}</td></tr></table>" for n in "123")
    source = Source([f"Intro\n\nsplit para-\n\n{t1}", f"{t2}\n\nmiddle", f"{t3}"])
    engine = Engine(
        source,
        # Page 0/1: the table continues (element 2 -> 0); page 1/2: nothing.
        merges={(t1, t2): [(2, 0)]},
        tables={(t1, t2): "<table><tr><td>1</td></tr><tr><td>2</td></tr></table>"},
    )
    events, outcome = await run(DocumentReader(engine, pages_in_flight=3), source)
    assert any(isinstance(e, MergeStarted) and e.pairs == 2 for e in events)
    assert engine.table_calls == [(t1, t2)]
    assert outcome.text == (
        "Intro\n\nsplit para-\n\n<table><tr><td>1</td></tr><tr><td>2</td></tr></table>"
        f"\n\nmiddle\n\n{t3}"
    )
    assert outcome.usage.total_tokens == sum(10 + i for i in range(3)) + 2 * 1 + 2


async def test_no_merge_across_a_fallback_page_or_between_separate_documents() -> None:
    source = Source(["a", None, "c"])
    engine = Engine(source)
    await run(DocumentReader(engine, pages_in_flight=2), source)
    assert engine.detect_calls == []
    single = Source(["a", "b"], multi=False)
    engine = Engine(single)
    await run(DocumentReader(engine, pages_in_flight=2), single)
    assert engine.detect_calls == []


async def test_stopping_early_cancels_pending_pages() -> None:
    source = Source([f"p{i}" for i in range(6)])
    engine = Engine(source, delays={i: 0.2 for i in range(1, 6)})
    reader = DocumentReader(engine, pages_in_flight=2)
    events = reader.read(source, range(6), JOB, merge=False)
    first = await anext(events)
    assert isinstance(first, PageRead)
    await events.aclose()
    await asyncio.sleep(0.05)
    assert engine.in_flight == 0
    assert len(source.rendered) <= 3
