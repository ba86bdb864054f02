"""Pages in scripts the embedded recogniser cannot read: read by Tesseract, or refused with a
reason, never an empty or junk success (issue 19)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ocrflux.engines.factory import missing_local_engine
from ocrflux.engines.local.errors import UnreadableScript
from ocrflux.engines.local.ocr import Recogniser
from ocrflux.engines.local.reader import read_page
from ocrflux.engines.local.tesseract import Tesseract, TesseractLines
from ocrflux.settings import Settings
from tests.engines.local.pages import PAGES, accuracy, empty_page, english_form
from tests.engines.local.script_pages import AR_LINES, KO_LINES, arabic_page, korean_page

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Debian's tesseract-ocr is not installed"
)


@pytest.fixture(scope="module")
def tesseract() -> Tesseract:
    found = Tesseract.find()
    assert found is not None
    return found


@needs_tesseract
@pytest.mark.parametrize(
    ("make", "lines", "language"),
    [(korean_page, KO_LINES, "ko"), (arabic_page, AR_LINES, "ar")],
)
def test_a_page_in_another_script_is_read_by_tesseract(
    recogniser: Recogniser, tesseract: Tesseract, make: object, lines: list[str], language: str
) -> None:
    assert callable(make)
    page = make()
    result = read_page(page.encoded(), recogniser, tesseract)
    assert result.primary_language == language, result.markdown
    assert accuracy(" ".join(lines), result.markdown, cjk=language == "ko") >= 0.9, result.markdown
    assert result.characters >= 0.9 * len("".join("".join(lines).split()))
    assert "[√]" not in result.markdown and "# " not in result.markdown


def test_without_tesseract_an_unreadable_page_is_refused_with_its_reason(
    recogniser: Recogniser,
) -> None:
    with pytest.raises(UnreadableScript, match="Tesseract is not installed"):
        read_page(arabic_page().encoded(), recogniser)


@needs_tesseract
def test_a_script_without_its_language_pack_is_refused_naming_the_package(
    recogniser: Recogniser, tesseract: Tesseract
) -> None:
    no_arabic = Tesseract(tesseract.binary, tesseract.languages - {"ara"})
    with pytest.raises(UnreadableScript, match=r"Arabic script.*tesseract-ocr-ara"):
        read_page(arabic_page().encoded(), recogniser, no_arabic)


@needs_tesseract
def test_latin_and_blank_pages_stay_with_the_recogniser(
    recogniser: Recogniser, tesseract: Tesseract
) -> None:
    # A tesseract that would fail if it were asked anything: these pages never reach it.
    never = Tesseract("/nonexistent/tesseract", tesseract.languages)
    english = read_page(english_form().encoded(), recogniser, never)
    assert "Fire exits are clear" in english.markdown
    blank = read_page(empty_page().encoded(), recogniser, never)
    assert blank.markdown == "" and blank.characters == 0


@needs_tesseract
def test_tesseract_detects_the_script_of_a_page(tesseract: Tesseract) -> None:
    gray = np.asarray(arabic_page().image.convert("L"))
    assert tesseract.script(gray) == "Arabic"
    assert {"eng", "osd"} <= tesseract.languages


@needs_tesseract
@pytest.mark.parametrize(("name", "floor"), [("english_form", 0.97), ("two_columns", 0.97)])
def test_tesseract_can_be_the_line_recogniser(
    tesseract: Tesseract, name: str, floor: float
) -> None:
    page = PAGES[name]()
    result = read_page(page.encoded(), TesseractLines(tesseract), tesseract)
    assert accuracy(page.text, result.markdown) >= floor, result.markdown
    assert result.primary_language == "en"
    if name == "english_form":
        # The engine's own structure: checkboxes from the pixels, the ruled table as HTML.
        assert "[√] Fire exits are clear" in result.markdown
        assert "[ ] Ladders are tagged" in result.markdown
        assert "<table>" in result.markdown


def test_the_tesseract_recogniser_needs_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    settings = Settings(ocr_backend="local", local_recogniser="tesseract", prompt_mode="ocrflux")
    message = missing_local_engine(settings)
    assert message is not None and "apt-get install tesseract-ocr" in message


@needs_tesseract
def test_with_tesseract_reading_lines_a_korean_page_still_goes_to_the_korean_pack(
    tesseract: Tesseract,
) -> None:
    # Tesseract's English pack finds every line of a Korean page (no ink is left uncovered)
    # but reads Latin junk with low confidence: that too sends the page to script detection.
    result = read_page(korean_page().encoded(), TesseractLines(tesseract), tesseract)
    assert result.primary_language == "ko", result.markdown
    assert accuracy(" ".join(KO_LINES), result.markdown, cjk=True) >= 0.9, result.markdown


@needs_tesseract
def test_a_page_with_too_few_characters_for_script_detection_has_no_script(
    tesseract: Tesseract,
) -> None:
    # Tesseract's OSD exits with an error ("Too few characters") on such a page: no script,
    # not a failed page.
    gray = np.full((600, 500), 255, np.uint8)
    gray[100:110, 100:400] = 0
    gray[300:400, 200:210] = 0
    assert tesseract.script(gray) is None


@needs_tesseract
def test_a_misnamed_script_is_read_with_the_installed_pack_that_fits(
    recogniser: Recogniser, tesseract: Tesseract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OSD named docling's scanned Korean report "Cyrillic" (no pack installed): the installed
    # packs for other scripts are tried and the one that reads the page confidently wins.
    monkeypatch.setattr(Tesseract, "script", lambda self, gray: "Cyrillic")
    result = read_page(korean_page().encoded(), recogniser, tesseract)
    assert result.primary_language == "ko", result.markdown
    assert accuracy(" ".join(KO_LINES), result.markdown, cjk=True) >= 0.9, result.markdown
