"""`LocalEngine`: the local engine behind the page contract, with a real worker pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pybase64
import pytest
import pytest_asyncio

from ocrflux.engines.base import PageJob
from ocrflux.engines.local.engine import LocalEngine, failure, local_usage, page_response
from ocrflux.engines.local.errors import LocalOCRError, UnreadableImage, WorkerCrashed
from ocrflux.engines.local.result import LocalPage
from ocrflux.intake.images import PreparedImage
from tests.engines.local.pages import accuracy, english_form, plain_text
from tests.engines.local.script_pages import arabic_page

in_module_loop = pytest.mark.asyncio(loop_scope="module")
JOB = PageJob("req-1", max_tokens=5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[LocalEngine]:
    engine = LocalEngine.create(workers=1, threads=2)
    await engine.start()
    yield engine
    await engine.aclose()


def prepared(data: bytes, mime: str = "image/png") -> PreparedImage:
    url = f"data:{mime};base64," + pybase64.b64encode(data).decode()
    return PreparedImage(url, 1000, 1300, mime, False)


def local_page(markdown: str, characters: int = 0) -> LocalPage:
    return LocalPage(markdown, characters, 1, "en", 0.1)


@in_module_loop
async def test_a_page_is_read_into_the_page_answer(engine: LocalEngine) -> None:
    page = english_form()
    result = await engine.read_page(prepared(page.png()), JOB)
    assert result.engine == "local" and not result.fallback and result.error is None
    assert result.page is not None
    assert result.page.primary_language == "en"
    assert result.page.is_rotation_valid and result.page.rotation_correction == 0
    assert not result.page.is_diagram
    text = result.page.natural_text or ""
    assert accuracy(page.text, text) >= 0.98
    assert "[√] Fire exits are clear" in text and "<table>" in text
    assert result.raw_text == text
    # Usage counts the characters recognised (no tokens), whatever max_tokens the client sent.
    assert result.usage.prompt_tokens == 0
    recognised = len("".join(plain_text(text).split()))
    assert result.usage.completion_tokens == result.usage.total_tokens == recognised


@in_module_loop
async def test_an_image_the_engine_cannot_decode_is_a_fallback_page(engine: LocalEngine) -> None:
    result = await engine.read_page(prepared(b"not an image at all"), JOB)
    assert result.fallback and result.engine == "local"
    assert result.error is not None
    assert (result.error.status, result.error.code) == (400, "invalid_image")


def test_pages_are_never_refused_before_reading() -> None:
    engine = LocalEngine.create(workers=1, threads=1)
    engine.check_page(20000, 30000, JOB)  # no context window: nothing to refuse


@in_module_loop
async def test_merges_come_from_the_text_rules(engine: LocalEngine) -> None:
    answer = await engine.detect_merges(["The work began in"], ["spring."], JOB)
    assert answer.pairs == [(0, 0)] and answer.usage.total_tokens == 0
    table = "<table><tr><td>a</td><td>b</td></tr></table>"
    merged = await engine.merge_tables(table, table, JOB)
    assert merged.table == table  # the repeated row is a repeated header
    narrow = "<table><tr><td>a</td></tr></table>"
    assert (await engine.merge_tables(table, narrow, JOB)).table is None


@pytest.mark.parametrize(
    ("markdown", "is_table"),
    [
        ("", False),
        ("# Title\n\nA paragraph of text.", False),
        ("<table><tr><td>a</td><td>b</td></tr></table>", True),
        (
            "Totals\n\n<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>",
            True,
        ),
        ("A" * 200 + "\n\n<table><tr><td>1</td></tr></table>", False),
    ],
)
def test_a_page_is_a_table_page_when_tables_hold_most_of_it(markdown: str, is_table: bool) -> None:
    assert page_response(local_page(markdown)).is_table is is_table


def test_usage_is_the_characters_recognised() -> None:
    usage = local_usage(local_page("# Hi there", characters=7))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 7, 7)


def test_engine_failures_say_whose_fault_they_are() -> None:
    assert (failure(UnreadableImage("x")).status, failure(UnreadableImage("x")).code) == (
        400,
        "invalid_image",
    )
    assert failure(WorkerCrashed("died")).status == 503
    assert failure(LocalOCRError("odd")).code == "local_engine_error"


@pytest.mark.asyncio
async def test_a_page_in_a_script_nothing_installed_reads_is_a_fallback_with_its_reason() -> None:
    engine = LocalEngine.create(workers=1, threads=1, tesseract=False)
    await engine.start()
    try:
        result = await engine.read_page(prepared(arabic_page().png()), JOB)
    finally:
        await engine.aclose()
    assert result.fallback and result.page is None and result.error is not None
    assert (result.error.status, result.error.code) == (422, "unreadable_script")
    assert "cannot read" in result.error.message
