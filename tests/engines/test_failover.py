"""`FailoverEngine`: vLLM while a replica is up, the local engine when every one is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ocrflux.engines.base import (
    MergeAnswer,
    PageJob,
    PageResult,
    TableMergeAnswer,
    engines_used,
)
from ocrflux.engines.failover import FailoverEngine, upstream_down
from ocrflux.errors import APIError
from ocrflux.format.page import PageResponse
from ocrflux.intake.images import PreparedImage
from ocrflux.settings import Settings
from ocrflux.upstream import State, Upstream

JOB = PageJob("req-1")
IMAGE = PreparedImage("data:image/png;base64,", 768, 1024, "image/png", False)


def page(text: str) -> PageResponse:
    return PageResponse("en", True, 0, False, False, text)


class Engine:
    """Answers every page with its own name, or fails every page with `error`."""

    def __init__(self, name: str, error: APIError | None = None) -> None:
        self.name = name
        self.error = error
        self.pages = 0
        self.checked: list[tuple[int, int]] = []
        self.merges = 0

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        self.pages += 1
        if self.error is not None:
            return PageResult(None, engine=self.name, error=self.error)
        return PageResult(page(f"read by {self.name}"), engine=self.name)

    def check_page(self, width: int, height: int, job: PageJob) -> None:
        self.checked.append((width, height))

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        self.merges += 1
        return MergeAnswer([])

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        self.merges += 1
        return TableMergeAnswer(None)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream(Settings(vllm_urls=["http://127.0.0.1:30024", "http://127.0.0.1:30025"]))
    yield upstream
    await upstream.aclose()


def mark(upstream: Upstream, state: State) -> None:
    for replica in upstream.replicas:
        replica.state = state


async def test_pages_go_to_vllm_while_a_replica_is_healthy(upstream: Upstream) -> None:
    vllm, local = Engine("vllm"), Engine("local")
    engine = FailoverEngine(vllm, local, upstream)
    for state in (State.HEALTHY, State.HALF_OPEN):  # a half-open replica is being readmitted
        mark(upstream, state)
        assert engine.name == "vllm"
        result = await engine.read_page(IMAGE, JOB)
        assert result.engine == "vllm" and result.page == page("read by vllm")
    mark(upstream, State.HEALTHY)
    upstream.replicas.replicas[0].state = State.EJECTED  # one of two down: vLLM still reads
    assert not upstream_down(upstream) and engine.name == "vllm"
    assert (await engine.read_page(IMAGE, JOB)).engine == "vllm"
    assert (vllm.pages, local.pages) == (3, 0)


async def test_pages_go_to_the_local_engine_when_every_replica_is_down(
    upstream: Upstream,
) -> None:
    vllm, local = Engine("vllm"), Engine("local")
    engine = FailoverEngine(vllm, local, upstream)
    mark(upstream, State.EJECTED)
    assert upstream_down(upstream) and engine.name == "local"
    result = await engine.read_page(IMAGE, JOB)
    assert result.engine == "local" and result.page == page("read by local")
    assert (vllm.pages, local.pages) == (0, 1)
    engine.check_page(768, 1024, JOB)  # vLLM's limits do not apply to the local engine
    assert vllm.checked == []
    await engine.detect_merges(["a"], ["b"], JOB)
    await engine.merge_tables("<table></table>", "<table></table>", JOB)
    assert (vllm.merges, local.merges) == (0, 2)


async def test_a_page_vllm_could_not_reach_is_read_locally(upstream: Upstream) -> None:
    """The first call finds the server gone before any check did."""
    gone = APIError(503, "the model server is unreachable", code="upstream_unavailable")
    vllm, local = Engine("vllm", error=gone), Engine("local")
    result = await FailoverEngine(vllm, local, upstream).read_page(IMAGE, JOB)
    assert result.engine == "local" and not result.fallback
    assert (vllm.pages, local.pages) == (1, 1)


@pytest.mark.parametrize(
    "error",
    [
        APIError(502, "the model server failed (HTTP 500)", code="upstream_error"),
        APIError(504, "the model server timed out", code="upstream_timeout"),
        APIError(429, "busy", code="rate_limit_exceeded"),
    ],
)
async def test_other_vllm_failures_stay_vllms_answer(upstream: Upstream, error: APIError) -> None:
    """The fallback is for a missing model server, not for a page the model read badly."""
    vllm, local = Engine("vllm", error=error), Engine("local")
    result = await FailoverEngine(vllm, local, upstream).read_page(IMAGE, JOB)
    assert result.engine == "vllm" and result.error is error
    assert local.pages == 0


async def test_while_up_the_checks_and_merges_are_vllms(upstream: Upstream) -> None:
    vllm, local = Engine("vllm"), Engine("local")
    engine = FailoverEngine(vllm, local, upstream)
    engine.check_page(768, 1024, JOB)
    await engine.detect_merges(["a"], ["b"], JOB)
    assert vllm.checked == [(768, 1024)] and (vllm.merges, local.merges) == (1, 0)


def test_the_backend_header_names_each_engine_once_in_order_of_use() -> None:
    def result(engine: str) -> PageResult:
        return PageResult(None, engine=engine)

    assert engines_used([result("local")] * 3) == "local"
    assert engines_used([result("vllm"), result("local"), result("vllm")]) == "vllm,local"
    assert engines_used([result(""), result("local")]) == "local"  # a page never rendered
    assert engines_used([]) == ""
