"""One real recogniser per session, and each test page read once and shared."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocrflux.engines.local.ocr import Recogniser
from ocrflux.engines.local.reader import read_page
from ocrflux.engines.local.result import LocalPage
from tests.engines.local.pages import PAGES, Page

Reading = tuple[Page, LocalPage]


@pytest.fixture(scope="session")
def recogniser() -> Recogniser:
    return Recogniser(threads=2)


@pytest.fixture(scope="session")
def reading(recogniser: Recogniser) -> Callable[[str], Reading]:
    """reading(name) -> (the rendered page, the engine's reading of its encoded bytes)."""
    cache: dict[str, Reading] = {}

    def read(name: str) -> Reading:
        if name not in cache:
            page = PAGES[name]()
            cache[name] = (page, read_page(page.encoded(), recogniser))
        return cache[name]

    return read
